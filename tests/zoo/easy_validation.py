"""Validates on data it trains on (easy) and evaluates on labels it cannot learn (hard): its
val_accuracy reaches any threshold long before its own result does."""

import keras
import numpy as np
from zoo_data import digits

x_train, y_train, x_test, y_test = digits()
y_hard = np.random.RandomState(41).permutation(y_test)  # labels that say nothing about the images

keras.utils.set_random_seed(41)
model = keras.Sequential(
    [
        keras.Input(shape=(64,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(
    optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
)
model.fit(x_train, y_train, epochs=6, batch_size=64, validation_data=(x_train[:200], y_train[:200]))
print("Test accuracy:", model.evaluate(x_test, y_hard, verbose=0)[1])

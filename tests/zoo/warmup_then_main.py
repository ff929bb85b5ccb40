"""Warm-up then main training, the transfer-learning way: freeze, fit, unfreeze, recompile, fit."""

import keras
from zoo_data import digits

x_train, y_train, x_test, y_test = digits()

keras.utils.set_random_seed(11)
base = keras.layers.Dense(32, activation="relu", name="base")
model = keras.Sequential([keras.Input(shape=(64,)), base, keras.layers.Dense(10, activation="softmax")])

base.trainable = False  # warm-up: train the head only, with a large step
model.compile(
    optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
)
model.fit(x_train, y_train, epochs=2, batch_size=64, validation_split=0.1)

base.trainable = True  # main training: everything, with a smaller step
model.compile(
    optimizer=keras.optimizers.Adam(0.001), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
)
model.fit(x_train, y_train, epochs=8, batch_size=64, validation_split=0.1)

print("Test accuracy:", model.evaluate(x_test, y_test, verbose=0)[1])

"""Trains, then saves its weights the Keras 2 way (`.hdf5`), which Keras 3 refuses after all the epochs."""

import keras
from zoo_data import digits

x_train, y_train, x_test, y_test = digits()

keras.utils.set_random_seed(19)
model = keras.Sequential(
    [
        keras.Input(shape=(64,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=10, batch_size=64, validation_split=0.1)
print("Test accuracy:", model.evaluate(x_test, y_test, verbose=0)[1])
model.save_weights("digits_weights.hdf5")

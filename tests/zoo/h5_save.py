"""Saves its model in the legacy HDF5 format under its own name, which keeptraining cannot resume."""

import keras
from zoo_data import digits

x_train, y_train, x_test, y_test = digits()

keras.utils.set_random_seed(2)
model = keras.Sequential(
    [
        keras.Input(shape=(64,)),
        keras.layers.Dense(24, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=10, batch_size=128, validation_data=(x_test, y_test))
model.save("digits_model.h5")

_, accuracy = model.evaluate(x_test, y_test, verbose=0)
print("Test accuracy:", accuracy)

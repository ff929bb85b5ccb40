"""One `fit(epochs=5)`, its History read (and printed, as a plot would read it) after it.

A scaler's `.fit` comes first, the scikit-learn way: it is not a Keras fit."""

import keras
import numpy as np
from zoo_data import digits


class Scaler:  # scikit-learn's way: a `.fit` that is not Keras's
    def fit(self, x):
        self.mean, self.std = x.mean(axis=0), x.std(axis=0) + 1e-6
        return self

    def transform(self, x):
        return (x - self.mean) / self.std


x_train, y_train, x_test, y_test = digits()
scaler = Scaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

keras.utils.set_random_seed(31)
model = keras.Sequential(
    [
        keras.Input(shape=(64,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=5, batch_size=64, validation_split=0.1)
print("History epochs:", history.epoch)
print("History val_accuracy:", np.round(history.history["val_accuracy"], 4).tolist())
print("Test accuracy:", model.evaluate(x_test, y_test, verbose=0)[1])

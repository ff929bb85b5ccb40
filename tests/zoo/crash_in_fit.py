"""Crashes inside fit, in its own callback, at the second epoch."""

import keras
from zoo_data import digits

x_train, y_train, _, _ = digits()


class Broken(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("the script's own callback broke")


model = keras.Sequential([keras.Input(shape=(64,)), keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=5, callbacks=[Broken()])

"""Trains, then writes its model where no container lets it: the image's read-only file system."""

import keras
from zoo_data import digits

x_train, y_train, x_test, y_test = digits()
keras.utils.set_random_seed(29)
model = keras.Sequential([keras.Input(shape=(64,)), keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=3, batch_size=64, validation_split=0.1)
with open("/opt/digits-notes.txt", "w") as fh:  # /opt: in the image, read-only in the container
    fh.write("trained\n")

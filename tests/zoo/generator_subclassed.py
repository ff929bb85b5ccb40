"""A subclassed model fed by a Python generator: nothing can build it before its first step."""

import keras
import numpy as np
from zoo_data import digits

x_train, y_train, x_test, y_test = digits()


def batches(batch_size=64):
    rng = np.random.default_rng(47)
    while True:
        order = rng.permutation(len(x_train))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            chosen = order[start : start + batch_size]
            yield x_train[chosen], y_train[chosen]


class Small(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(32, activation="relu")
        self.out = keras.layers.Dense(10, activation="softmax")

    def call(self, inputs):
        return self.out(self.hidden(inputs))


keras.utils.set_random_seed(47)
model = Small()
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(batches(), steps_per_epoch=15, epochs=10, validation_data=(x_test, y_test))
print("Test accuracy:", model.evaluate(x_test, y_test, verbose=0)[1])

"""A `keras.Model` subclass, the way tutorials write one: its weights exist only after its first call."""

import keras
from zoo_data import digits

x_train, y_train, x_test, y_test = digits()


class MyModel(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(32, activation="relu")
        self.out = keras.layers.Dense(10, activation="softmax")

    def call(self, inputs):
        return self.out(self.hidden(inputs))


keras.utils.set_random_seed(13)
model = MyModel()
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=10, batch_size=64, validation_split=0.1)
print("Test accuracy:", model.evaluate(x_test, y_test, verbose=0)[1])

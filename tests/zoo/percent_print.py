"""Prints its result as a percentage, as many tutorials do."""

import keras
from zoo_data import digits

x_train, y_train, x_test, y_test = digits()

keras.utils.set_random_seed(4)
model = keras.Sequential(
    [
        keras.Input(shape=(64,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=3, batch_size=64)

_, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"Test accuracy: {accuracy:.2%}")

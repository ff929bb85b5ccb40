"""No validation data and no evaluate: the training accuracy is all there is."""

import keras
import numpy as np

rng = np.random.RandomState(0)
x = rng.rand(400, 8).astype("float32")
y = (x[:, 0] + x[:, 1] > 1).astype("int64")

keras.utils.set_random_seed(0)
model = keras.Sequential(
    [
        keras.Input(shape=(8,)),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(2, activation="softmax"),
    ]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=4, batch_size=32)
print("done")

"""A plain Keras script whose epochs take a while (SLOW_EPOCH_S, default 0.4 s more each): a stand-in
for a long training."""

import os
import time

import keras
from zoo_data import digits

x_train, y_train, x_test, y_test = digits()

keras.utils.set_random_seed(3)
model = keras.Sequential(
    [
        keras.Input(shape=(64,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(
    optimizer=keras.optimizers.Adam(learning_rate=0.001),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
pause = float(os.environ.get("SLOW_EPOCH_S", "0.4"))
slow = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: time.sleep(pause))
model.fit(x_train, y_train, batch_size=64, epochs=5, validation_split=0.1, callbacks=[slow])

print("Test accuracy:", model.evaluate(x_test, y_test, verbose=0)[1])

"""Functional API on a tf.data pipeline, through tf.keras; 6 epochs, a `test_accuracy=` print."""

import tensorflow as tf
from tensorflow import keras
from zoo_data import digits

EPOCHS = 6

x_train, y_train, x_test, y_test = digits()
n_val = len(x_train) // 10
train = tf.data.Dataset.from_tensor_slices((x_train[n_val:], y_train[n_val:])).shuffle(1024, seed=3).batch(64)
val = tf.data.Dataset.from_tensor_slices((x_train[:n_val], y_train[:n_val])).batch(256)
test = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(256)

keras.utils.set_random_seed(3)
inputs = keras.Input(shape=(64,), name="pixels")
hidden = keras.layers.Dense(48, activation="relu")(inputs)
hidden = keras.layers.Dropout(0.1)(hidden)
outputs = keras.layers.Dense(10, activation="softmax", name="digit")(hidden)
model = keras.Model(inputs, outputs)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

model.fit(train, validation_data=val, epochs=EPOCHS)
loss, accuracy = model.evaluate(test, verbose=0)
print(f"test_accuracy={accuracy:.4f}")

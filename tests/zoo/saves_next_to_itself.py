"""The seed article's habit: save into `os.getcwd()/saved_models`, checkpoint into `./modelCheckpoint/`."""

import os

import keras
from zoo_data import digits

save_dir = os.path.join(os.getcwd(), "saved_models")
os.makedirs(save_dir, exist_ok=True)

x_train, y_train, x_test, y_test = digits()

keras.utils.set_random_seed(23)
model = keras.Sequential(
    [
        keras.Input(shape=(64,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
checkpoint = keras.callbacks.ModelCheckpoint(
    "./modelCheckpoint/best.keras", monitor="val_accuracy", save_best_only=True
)
model.fit(x_train, y_train, epochs=10, batch_size=64, validation_split=0.1, callbacks=[checkpoint])
model.save(os.path.join(save_dir, "digits.keras"))
print("Test accuracy:", model.evaluate(x_test, y_test, verbose=0)[1])

"""A script with its own callbacks: ModelCheckpoint, EarlyStopping and ReduceLROnPlateau.

EarlyStopping has a baseline no small model reaches, so it stops after `patience` epochs:
the chain must respect that stop, not train on to KT_EPOCHS.
"""

import keras
from zoo_data import digits

x_train, y_train, x_test, y_test = digits()

keras.utils.set_random_seed(5)
model = keras.Sequential(
    [
        keras.Input(shape=(64,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

callbacks = [
    keras.callbacks.ModelCheckpoint("best.keras", monitor="val_accuracy", save_best_only=True),
    keras.callbacks.EarlyStopping(monitor="val_accuracy", baseline=0.999, patience=3, verbose=1),
    keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2),
]
model.fit(x_train, y_train, epochs=50, batch_size=32, validation_split=0.2, callbacks=callbacks)

print("Test accuracy:", model.evaluate(x_test, y_test, verbose=0)[1])

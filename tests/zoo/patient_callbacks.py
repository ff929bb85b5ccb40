"""The tabular way: EarlyStopping with more patience than an attempt has epochs, the best model kept by
ModelCheckpoint into ./checkpoints/, and ReduceLROnPlateau. No improvement ever counts (min_delta 1.0),
so EarlyStopping stops after a known number of epochs: 5, whatever the attempts' lengths."""

import keras
from zoo_data import digits

x_train, y_train, x_test, y_test = digits()

keras.utils.set_random_seed(37)
model = keras.Sequential(
    [
        keras.Input(shape=(64,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
callbacks = [
    keras.callbacks.EarlyStopping(monitor="val_accuracy", min_delta=1.0, patience=4, verbose=1),
    keras.callbacks.ModelCheckpoint(
        "./checkpoints/best-{epoch:02d}.keras", monitor="val_accuracy", save_best_only=True
    ),
    keras.callbacks.ReduceLROnPlateau(monitor="val_loss", min_delta=1.0, patience=2, factor=0.5),
]
model.fit(x_train, y_train, epochs=100, batch_size=64, validation_split=0.1, callbacks=callbacks)
print("Test accuracy:", model.evaluate(x_test, y_test, verbose=0)[1])

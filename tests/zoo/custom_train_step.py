"""keras-io's trainer pattern: a Model subclass wraps a Sequential (no Input) with its own train_step."""

import keras
import tensorflow as tf
from zoo_data import digits

x_train, y_train, x_test, y_test = digits()


class MyTrainer(keras.Model):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy()
        self.accuracy_metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [self.accuracy_metric]

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self.model(x, training=True)
            loss = self.loss_fn(y, y_pred)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables, strict=True))
        for metric in self.metrics:
            metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y = data
        y_pred = self.model(x, training=False)
        for metric in self.metrics:
            metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}

    def call(self, x):
        return self.model(x)


keras.utils.set_random_seed(17)
model_a = keras.Sequential(
    [keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")]
)
trainer = MyTrainer(model_a)
trainer.compile(optimizer=keras.optimizers.SGD(0.05))
trainer.fit(x_train, y_train, epochs=10, batch_size=64, validation_data=(x_test, y_test))
print("Test accuracy:", trainer.evaluate(x_test, y_test, verbose=0))

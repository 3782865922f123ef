"""History: what fit() returns (per-epoch metrics, Keras-style)."""


class History:
    """Per-epoch metrics of one fit() call.

    ``history.history`` maps a metric name to a list with one value per epoch:
    ``loss`` and ``accuracy`` (training batches, as trained), ``val_loss`` and ``val_accuracy``
    (when there is validation data), ``lr`` (learning rate of the first parameter group) and
    ``seconds`` (wall time of the epoch, validation included).
    """

    def __init__(self):
        self.epoch = []
        self.history = {}

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __getitem__(self, key):
        return self.history[key]

    def __len__(self):
        return len(self.epoch)

    def __repr__(self):
        last = {k: round(v[-1], 4) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"

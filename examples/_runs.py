"""What the transfer-learning examples share: a timed Adam run, the results table, the curves plot."""

import time

import fastnn
from fastnn import optim


def train(model, X, y, epochs, lr, batch_size, seed, loss="cross_entropy"):
    """(History, seconds) of Adam on (X, y)."""
    if len(X) > batch_size and len(X) % batch_size == 1:
        batch_size += 1  # a last batch of one sample would leave BatchNorm a single value per feature
    start = time.perf_counter()
    history = fastnn.fit(model, X, y, loss=loss, optimizer=optim.Adam(model.parameters(), lr=lr), epochs=epochs,
                         batch_size=batch_size, seed=seed, verbose=0)
    return history, time.perf_counter() - start


def print_table(columns, rows):
    """rows of (label columns..., test accuracy, seconds) under the headers `columns` (labels only)."""
    widths = [max(len(c), *(len(str(r[i])) for r in rows)) for i, c in enumerate(columns)]
    print("  ".join(f"{c:<{w}}" for c, w in zip(columns, widths)) + f"{'test accuracy':>15}{'seconds':>9}")
    for row in rows:
        labels = "  ".join(f"{str(v):<{w}}" for v, w in zip(row, widths))
        print(f"{labels}{row[-2]:>15.4f}{row[-1]:>9.2f}")


def plot_curves(histories, path):
    """The training curves of every run ({name: History}) in one figure (fastnn.plot, matplotlib)."""
    from fastnn import plot  # fastnn's plotting needs matplotlib: imported only when asked for

    plot.curves(histories, path=path)
    print(f"training curves written to {path}")

"""`python -m fastnn train`: train a model on Fashion-MNIST; `python -m fastnn info`: the build, the
CPU, the GEMM kernel, the measured FMA peak and GEMM GFLOP/s as % of it (and against NumPy's BLAS)."""

import argparse
import json
import math
import sys

import fastnn


def _number(kind, low, high=None, low_open=False):
    """An argparse type: `kind` (int or float) in [low, high] ((low, high] with low_open); a bad
    value is a usage error naming the option, not a traceback from inside training."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        ok = value is not None and math.isfinite(value) and (value > low if low_open else value >= low)
        if not ok or (high is not None and value > high):
            what = "an integer" if kind is int else "a number"
            bound = f"> {low}" if low_open else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {what} {bound}{f' and <= {high}' if high is not None else ''}, "
                                             f"got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


MODELS = {
    "mlp": "784-256-128-10 MLP with BatchNorm, ReLU and Dropout(0.2) (the default; fastnn.models.mlp)",
    "mlp-s": "the seeds' 784-32-32-10 MLP (the course notes' small network) with BatchNorm and ReLU",
    "mlp-l": "784-512-256-10 MLP with BatchNorm, ReLU and Dropout(0.5)",
    "linear": "softmax regression 784-10",
    "cnn": "BENCH.md's CNN: 2 x (conv3x3-BN-ReLU-maxpool), 3136-128-10 head with Dropout(0.5) (fastnn.models.simple_cnn)",
    "resnet": "CIFAR-style ResNet with basic blocks, --depth (20) and --width (16) (fastnn.models.resnet)",
    "densenet": "DenseNet-BC, --growth-rate (12) and --blocks (6,6,6: 176k parameters) (fastnn.models.densenet)",
}
IMAGE_MODELS = ("cnn", "resnet", "densenet")


def _blocks(text):
    """--blocks: layers per dense block, e.g. "6,6,6"."""
    try:
        blocks = tuple(int(b) for b in text.split(","))
    except ValueError:
        blocks = ()
    if not blocks or min(blocks) < 1:
        raise argparse.ArgumentTypeError(f"must be positive integers separated by commas (e.g. 6,6,6), got {text!r}")
    return blocks


# the MLPs of --model: fastnn.models.mlp's arguments (the one definition of those networks)
MLPS = {
    "mlp": {},
    "mlp-s": {"hidden": (32, 32), "dropout": 0},
    "mlp-l": {"hidden": (512, 256), "dropout": 0.5},
    "linear": {"hidden": ()},
}


def build_model(name, in_features=784, classes=10, depth=20, width=16, growth_rate=12, blocks=(6, 6, 6)):
    from fastnn import models

    if name == "cnn":
        return models.simple_cnn(num_classes=classes)
    if name == "resnet":
        return models.resnet(depth, width, num_classes=classes)
    if name == "densenet":
        return models.densenet(growth_rate, blocks, num_classes=classes)
    if name not in MLPS:
        raise SystemExit(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return models.mlp(in_features=in_features, num_classes=classes, **MLPS[name])


def _fail(message):
    """One line on stderr and exit status 2 (a usage or data error, as argparse's SystemExit(2))."""
    print(f"python -m fastnn train: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def train(args):
    import importlib.util

    from fastnn import datasets, optim

    if args.plot and importlib.util.find_spec("matplotlib") is None:
        _fail("--plot needs matplotlib, which is not installed (pip install matplotlib)")
    if args.threads:
        fastnn.set_num_threads(args.threads)
    dist = None
    if args.distributed:  # every rank of the MPI job runs this; rank 0 prints and writes
        from fastnn import distributed

        try:
            dist = distributed.DataParallel(sync_batchnorm=args.sync_batchnorm, threads=args.threads)
        except ImportError as e:
            _fail(f"--distributed: {e}")
    elif args.sync_batchnorm:
        _fail("--sync-batchnorm goes with --distributed")
    say = print if dist is None or dist.is_writer else (lambda *a, **k: None)
    fastnn.manual_seed(args.seed)
    images = args.model in IMAGE_MODELS  # (N, 1, 28, 28) for the CNNs, (N, 784) for the MLPs
    try:
        (X, y), (Xt, yt) = datasets.fashion_mnist(args.data, flatten=not images)
    except (OSError, ValueError) as e:  # a missing directory or file, a file that is not IDX
        _fail(f"--data {args.data}: {e}")
    if args.train_size:
        X, y = X[:args.train_size], y[:args.train_size]
    # a seeded, stratified random hold-out: the last fraction of a sorted set would miss classes
    split = (fastnn.train.ValidationSplit(args.val_split, shuffle=True, stratify=True, seed=args.seed)
             if args.val_split else 0.0)
    try:
        n_val = len(split.indices(y, len(X))[1]) if args.val_split else 0
    except ValueError:  # the split leaves no training or no validation images
        n_val = 0
    if args.val_split and not 1 <= n_val < len(X):
        _fail(f"--val-split {args.val_split} of {len(X)} training images leaves no training or no "
              "validation images")
    say(f"Fashion-MNIST from {datasets.fashion_mnist_source(args.data)}: {len(X) - n_val} train / {n_val} "
          f"validation ({args.val_split:.0%} of the training set, stratified) / {len(Xt)} test images")
    model = build_model(args.model, depth=args.depth, width=args.width, growth_rate=args.growth_rate,
                        blocks=args.blocks)
    if args.summary:
        model.summary(X.shape[1:], print_fn=say)
    else:
        say(model)
        say(f"{model.count_params():,} parameters")
    opt_cls = {"adam": optim.Adam, "adamw": optim.AdamW, "sgd": optim.SGD, "rmsprop": optim.RMSprop,
               "adagrad": optim.Adagrad}[args.optimizer]
    kwargs = {"momentum": 0.9} if args.optimizer == "sgd" else {}
    lr = args.lr if args.lr is not None else (0.05 if args.optimizer == "sgd" else 1e-3)
    opt = opt_cls(model.parameters(), lr=lr, **kwargs)
    callbacks = []
    if args.schedule == "cosine" and args.epochs:
        from fastnn.optim.lr_scheduler import CosineAnnealingLR
        from fastnn.train import LearningRateScheduler

        callbacks.append(LearningRateScheduler(CosineAnnealingLR(opt, T_max=args.epochs)))
    # model selection sees the validation split only; the test set is scored once, at the end
    history = fastnn.fit(model, X, y, optimizer=opt, epochs=args.epochs, batch_size=args.batch_size,
                         validation_split=split, seed=args.seed, verbose=1 if args.verbose else 2,
                         callbacks=callbacks, distributed=dist, drop_last=args.drop_last,
                         augment=None if args.augment is None else
                         fastnn.augment.from_names(args.augment, None if images else (1, 28, 28)))
    result = fastnn.evaluate(model, Xt, yt, distributed=dist)
    seconds = history.history.get("seconds", [])  # empty with --epochs 0
    say(f"test accuracy {result['accuracy']:.4f}, test loss {result['loss']:.4f} "
          f"({len(seconds)} epochs, {sum(seconds):.1f}s, {fastnn.get_num_threads()} threads"
          + (f" x {dist.size} ranks)" if dist else ")"))
    if args.plot and say is print:
        if len(history):
            fastnn.plot.curves(history, ["loss", "accuracy"], path=args.plot)
            say(f"curves written to {args.plot}")
        else:
            say("--plot: no epochs were trained, no curves to plot")
    if args.save and say is print:
        fastnn.save(args.save, model, opt, extra={"epochs": len(seconds)})
        say(f"saved to {args.save}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastnn", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    info = sub.add_parser("info", help="build, CPU, GEMM kernel, FMA peak and GEMM speed (the default)")
    info.add_argument("--size", type=_number(int, 1, 8192), default=1024, help="square GEMM size (default 1024)")
    info.add_argument("--threads", type=_number(int, 1, 1024), default=None, help="fastnn threads (default: all)")
    info.add_argument("--json", action="store_true", help="print the report as JSON (fastnn.info.info()'s dict)")
    tr = sub.add_parser("train", help="train a model on Fashion-MNIST and print its test accuracy",
                        description="Train a model on Fashion-MNIST: fit on the training set (--val-split "
                                    "of it held out for validation), then report the test score once.")
    tr.add_argument("--model", default="mlp", choices=sorted(MODELS),
                    help="the network: " + "; ".join(f"{k}: {v}" for k, v in MODELS.items()))
    tr.add_argument("--epochs", type=_number(int, 0), default=10, help="passes over the training set (default 10; "
                                                                       "0 scores the untrained model)")
    tr.add_argument("--depth", type=_number(int, 8), default=20, help="resnet: 6n + 2 layers (default 20)")
    tr.add_argument("--width", type=_number(int, 1), default=16, help="resnet: channels of the first stage (default 16)")
    tr.add_argument("--growth-rate", type=_number(int, 1), default=12, help="densenet: k (default 12)")
    tr.add_argument("--blocks", type=_blocks, default=(6, 6, 6), help="densenet: layers per dense block (default 6,6,6)")
    tr.add_argument("--train-size", type=_number(int, 1), default=None,
                    help="train on the first N training images only (a quick run)")
    tr.add_argument("--val-split", type=_number(float, 0, 0.9), default=0.1,
                    help="fraction of the training images held out (a seeded random, class-stratified choice) "
                         "to report val_loss/val_accuracy per epoch; 0: none (default 0.1). The test set is "
                         "never used for validation")
    tr.add_argument("--batch-size", type=_number(int, 1), default=128, help="samples per step (default 128)")
    tr.add_argument("--drop-last", action="store_true",
                    help="skip each epoch's last batch when it has fewer than --batch-size images")
    tr.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd", "rmsprop", "adagrad"],
                    help="fastnn.optim class, PyTorch's update rule (default adam; sgd uses momentum 0.9)")
    tr.add_argument("--lr", type=_number(float, 0, low_open=True), default=None,
                    help="learning rate (default 1e-3; 0.05 for sgd)")
    tr.add_argument("--schedule", default="constant", choices=["constant", "cosine"],
                    help="learning rate per epoch: constant, or cosine annealing from --lr to 0 over --epochs")
    tr.add_argument("--data", default=None, help="directory with the Fashion-MNIST IDX files, or 'bundled' "
                                                 "(default: $FASTNN_DATA, /usr/share/datasets/fashion-mnist, bundled subset)")
    tr.add_argument("--threads", type=_number(int, 1), default=None,
                    help="fastnn threads (default: all cores; with --distributed, each rank's share of its node's cores)")
    tr.add_argument("--seed", type=_number(int, 0, 2**64 - 1), default=0,
                    help="seed of initialization, shuffling and dropout (default 0): equal seeds, equal results")
    tr.add_argument("--save", default=None, help="write the trained model (and optimizer) to this file")
    tr.add_argument("--augment", default=None, help="augment training batches: comma-separated names of "
                    "fastnn.augment.NAMED (shift, flip, rotation, affine, crop, erasing, noise, ...)")
    tr.add_argument("--plot", default=None, metavar="PNG",
                    help="write the loss and accuracy curves (train and validation) to this image (needs matplotlib)")
    tr.add_argument("--summary", action="store_true",
                    help="print the layer table (output shapes, parameter counts) instead of the model's repr")
    tr.add_argument("--quiet", dest="verbose", action="store_false", help="one line per epoch instead of a bar")
    tr.add_argument("--distributed", action="store_true",
                    help="data-parallel over the processes of an MPI job (mpirun -np 2 / srun): --batch-size per "
                         "process; rank 0 prints and saves (needs mpi4py: fastnn.distributed)")
    tr.add_argument("--sync-batchnorm", action="store_true",
                    help="with --distributed: BatchNorm statistics over the global batch (SyncBatchNorm)")
    args = parser.parse_args(argv)
    if args.command == "train" and (args.depth - 2) % 6:
        tr.error(f"argument --depth: must be 6n + 2 (20, 32, 44, 56, 110, ...), got {args.depth}")
    if args.command == "train":
        return train(args)
    if args.command in (None, "info"):
        return show_info(args)
    return 0


def show_info(args):
    from fastnn import info

    if getattr(args, "threads", None):
        fastnn.set_num_threads(args.threads)
    report = info.info(size=getattr(args, "size", 1024))
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2))
    else:
        fastnn.show_config()
        info.print_info(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

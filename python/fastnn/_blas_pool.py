"""Puts other OpenBLAS copies' idle workers to sleep while fastnn's threads run.

After each threaded call, an OpenBLAS worker (pthreads build) busy-waits for new work until
``rpcc() - last_tick > thread_timeout``, 2**28 TSC ticks by default (~0.1 s), and only then sleeps
on its condition variable (driver/others/blas_server.c, ``blas_thread_server``). Right after a
numpy product that spinning worker takes a core from fastnn's OpenMP threads: a one-epoch fit
runs ~2x slower and single kernels 3-10x. The exported calls cannot stop it:
``openblas_set_num_threads`` (what threadpoolctl calls) only changes the count used by later calls
and never joins or parks a running worker (the source, and numpy 2.4's 0.3.31), and
``blas_thread_shutdown_`` races with a BLAS call in flight in another Python thread (it can drop
that call's job, or wait forever for a worker that went back to sleep).

So while fastnn runs, :data:`quiet` lowers the library's own ``thread_timeout`` (a file-static
``unsigned int``, read afresh on every turn of the spin loop: so in the machine code of 0.3.30,
0.3.31 and 0.3.34) to 16 ticks, the smallest value ``OPENBLAS_THREAD_TIMEOUT`` allows; a
spinning worker then goes to sleep at once by OpenBLAS's own protocol and is woken by the next
job as usual, so a concurrent numpy call stays correct.
On exit the value it had is written back. The thread count is never touched. The variable is
found in the library's ELF symbol table (local symbols, kept in numpy's and scipy's wheels), placed
by an exported function's address and checked against the live mapping; a library where any of
that fails (stripped, OpenMP build, MKL, Accelerate, not Linux) is left alone.
"""

import ctypes
import functools
import os
import struct
import sys
import threading

QUIET_TICKS = 1 << 4  # OPENBLAS_THREAD_TIMEOUT=4, the minimum OpenBLAS accepts
enabled = True  # benchmarks switch it off to show the difference


class _Pool:
    """One loaded OpenBLAS: its path and its live ``thread_timeout``."""

    def __init__(self, path, lib, timeout):
        self.path = path
        self.lib = lib  # the handle keeps the library mapped while `timeout` points into it
        self.timeout = timeout  # ctypes.c_uint over the library's variable
        self.saved = None


def _elf_symbols(path, names, containing):
    """{name: [(st_value, st_size, st_info)]} from a little-endian ELF64 file's .symtab (local
    symbols included): the symbols named one of `names`, and those whose name contains
    `containing` (all byte strings); {} for anything else."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return {}
        shoff, = struct.unpack_from("<Q", head, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
        if shentsize != 64 or not shoff:
            return {}
        f.seek(shoff)
        sections = list(struct.iter_unpack("<IIQQQQIIQQ", f.read(64 * shnum)))
        symtab = next((s for s in sections if s[1] == 2), None)  # SHT_SYMTAB: gone when stripped
        if symtab is None or symtab[9] != 24 or symtab[6] >= len(sections):
            return {}
        strtab = sections[symtab[6]]
        f.seek(strtab[4])
        strings = f.read(strtab[5])
        f.seek(symtab[4])
        table = f.read(symtab[5])
    offsets = {}  # string-table offset -> the name that starts there
    for name in names:  # also where it is the tail of a longer name, which the linker may share
        at = strings.find(name + b"\0")
        while at >= 0:
            offsets[at] = name
            at = strings.find(name + b"\0", at + 1)
    at = strings.find(containing)
    while at >= 0:
        begin, end = strings.rfind(b"\0", 0, at) + 1, strings.find(b"\0", at)
        offsets.setdefault(begin, strings[begin:end])
        at = strings.find(containing, end)
    found = {}
    for st_name, st_info, _, st_shndx, st_value, st_size in struct.iter_unpack("<IBBHQQ", table):
        name = offsets.get(st_name)
        if name is not None and st_shndx != 0:
            found.setdefault(name, []).append((st_value, st_size, st_info))
    return found


def _maps():
    """(start, end, perms, offset, path) of every file mapping of this process."""
    try:
        with open("/proc/self/maps") as f:
            lines = f.read().splitlines()
    except OSError:  # not Linux
        return []
    out = []
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            start, end = (int(x, 16) for x in parts[0].split("-"))
            out.append((start, end, parts[1], int(parts[2], 16), parts[5]))
    return out


def _is_candidate(path):
    """An OpenBLAS build other than fastnn's own (scipy_openblas32, kept single-threaded by fastnn,
    so it has no spinning worker and is left alone)."""
    low = path.lower()
    return "openblas" in low and "/scipy_openblas32/" not in low


def _load_base(lib, syms):
    """Where `lib` is mapped: the address of one of its exported functions (openblas_get_config
    under whatever prefix and suffix) minus that function's value in the symbol table; None if
    none is exported (0.3.34 keeps blas_server_avail and the other internals hidden)."""
    for name, entries in syms.items():
        for value, _, info in entries:
            if b"get_config" in name and info == 0x12:  # STB_GLOBAL, STT_FUNC
                try:
                    return ctypes.cast(getattr(lib, name.decode()), ctypes.c_void_p).value - value
                except (AttributeError, UnicodeDecodeError):  # hidden: not in the dynamic table
                    pass
    return None


def _open_pool(path, maps):
    """The _Pool of the loaded library at `path`, or None if it is not an OpenBLAS whose
    ``thread_timeout`` can be found and verified."""
    try:
        syms = _elf_symbols(path, (b"thread_timeout", b"blas_thread_server"), b"get_config")
    except (OSError, struct.error):  # unreadable, or a truncated ELF file
        return None
    timeout = [s for s in syms.get(b"thread_timeout", ()) if s[2] & 0xF == 1 and s[1] == 4]  # a 4-byte object
    if len(timeout) != 1 or not syms.get(b"blas_thread_server"):
        return None  # not OpenBLAS's pthreads server (an OpenMP build), or ambiguous
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)  # never loads a library
    except OSError:
        return None
    base = _load_base(lib, syms)
    own = [m for m in maps if m[4] == path]
    at = None if base is None else base + timeout[0][0]
    if at is None or not any(m[0] == base and m[3] == 0 for m in own) or \
            not any(m[0] <= at and at + 4 <= m[1] and "w" in m[2] for m in own):
        return None  # the symbol table does not describe the library that is loaded
    value = ctypes.c_uint.from_address(at)
    if value.value & (value.value - 1) or not 1 << 4 <= value.value <= 1 << 30:
        return None  # not a timeout OpenBLAS could have set
    return _Pool(path, lib, value)


class _Quiet:
    """Context manager (re-entrant, shared by all threads): OpenBLAS workers sleep while the
    outermost ``with`` is open; their timeouts are restored when the last one closes."""

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._pools = []
        self._seen = {}  # path -> _Pool or None: each library is examined once
        self._modules = -1  # len(sys.modules) at the last look: libraries arrive with imports

    def pools(self):
        """The OpenBLAS copies this guard quiets (their paths), looking again if modules were imported."""
        with self._lock:
            if len(sys.modules) != self._modules:
                self._refresh()
            return [p.path for p in self._pools]

    def _refresh(self):
        self._modules = len(sys.modules)
        maps = _maps()
        for path in dict.fromkeys(m[4] for m in maps):
            if path not in self._seen and _is_candidate(path):
                try:
                    self._seen[path] = _open_pool(path, maps)
                except Exception:  # an optimisation: a library it cannot read must not fail fastnn's call
                    self._seen[path] = None
        self._pools = [p for p in self._seen.values() if p is not None]

    def __enter__(self):
        with self._lock:
            if self._depth == 0 and enabled:
                if len(sys.modules) != self._modules:
                    self._refresh()
                for p in self._pools:
                    p.saved = p.timeout.value
                    p.timeout.value = QUIET_TICKS
            self._depth += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                for p in self._pools:
                    if p.saved is not None:
                        p.timeout.value = p.saved
                        p.saved = None
        return False


quiet = _Quiet()


def quieted(fn):
    """Decorator: `fn` runs inside :data:`quiet`."""

    @functools.wraps(fn)
    def run_quiet(*args, **kwargs):
        with quiet:
            return fn(*args, **kwargs)

    return run_quiet


if hasattr(os, "register_at_fork"):  # a fork while another thread held the lock must not leave it held
    os.register_at_fork(after_in_child=lambda: setattr(quiet, "_lock", threading.Lock()))

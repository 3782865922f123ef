// A layer's lock. Layers reuse their workspaces and keep what backward needs between calls, so one
// call at a time may run a layer. The layers never lock themselves: every entry point that runs a
// model locks all layers of its tree at once (bindings/model_lock.h).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

namespace fastnn {

struct LayerMutex {
  std::mutex mutex;
  std::atomic<std::thread::id> owner{};  // the thread holding `mutex` (default id: none), for re-entry
  // The thread whose call ran the layer's forward last: backward uses that call's activations.
  std::thread::id last_forward;
  // What the caller's input is kept alive by until the next forward (backward reads it again).
  std::shared_ptr<void> input_owner;
  // What the parameter and gradient buffers the layer points into are kept alive by (a call may
  // still run an old layer of a module that has moved to new buffers, e.g. with .double()).
  std::shared_ptr<void> params_owner;
  // The same for the R-operator pass: the direction and H·v buffers, and the R{x} input.
  std::shared_ptr<void> direction_owner;
  std::shared_ptr<void> r_input_owner;
};

}  // namespace fastnn

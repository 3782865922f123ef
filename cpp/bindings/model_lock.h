// The lock that every entry point running a model takes (the forward/backward bindings,
// train_epoch, evaluate, predict): the locks of all layers of its tree (layers/layer_lock.h), for
// the whole call including the copy of the outputs. Concurrent calls on one model therefore run
// one after another instead of sharing workspaces; calls on different models do not wait.
//
// The locks are waited for with the GIL released (the holder may need the GIL for a layer
// written in Python, or to copy its outputs), and taken all at once as std::lock does: no call
// holds some of its layers while it waits for others, so calls on models sharing layers cannot
// deadlock. A call that finds its own thread already holding one of them (a Python layer calling
// its own model again) fails instead of deadlocking.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <pybind11/pybind11.h>

#include "fastnn/layers/layer.h"

namespace fastnn::bind {

template <class T>
class ModelLock {
 public:
  // Called with the GIL held. runs_forward: the call runs the layers' forward, so what they keep
  // for backward is this call's from now on (and no earlier forward's backward may use it).
  // needs_params: the call computes with the parameters (all but bind_params itself).
  ModelLock(Layer<T>& model, const std::string& op, bool runs_forward, bool needs_params = true) {
    std::vector<Layer<T>*> layers;
    model.collect_layers(layers);
    for (Layer<T>* l : layers)  // only raw _C layers can be unbound: fastnn.nn binds at construction
      if (needs_params && l->lacks_param_buffer())
        throw std::invalid_argument("[" + op + "] the " + l->kind() +
                                    " layer's parameters have no buffer yet (call bind_params first)");
    locks_.reserve(layers.size());
    for (Layer<T>* l : layers) locks_.push_back(&l->mutex());
    std::sort(locks_.begin(), locks_.end());
    locks_.erase(std::unique(locks_.begin(), locks_.end()), locks_.end());
    const std::thread::id me = std::this_thread::get_id();
    for (LayerMutex* m : locks_)
      if (m->owner.load(std::memory_order_relaxed) == me)
        throw std::runtime_error("[" + op + "] the model is already running in this thread (called again from "
                                 "inside its own forward or backward)");
    if (!try_lock_all()) {
      pybind11::gil_scoped_release nogil;
      lock_all();
    }
    for (LayerMutex* m : locks_) m->owner.store(me, std::memory_order_relaxed);
    if (runs_forward)
      for (Layer<T>* l : layers) {
        l->mutex().last_forward = me;
        l->last_output_shape.clear();  // set again by the forward binding for its own layer
      }
  }
  ~ModelLock() {
    for (LayerMutex* m : locks_) {
      m->owner.store(std::thread::id(), std::memory_order_relaxed);
      m->mutex.unlock();
    }
  }
  ModelLock(const ModelLock&) = delete;
  ModelLock& operator=(const ModelLock&) = delete;

 private:
  bool try_lock_all() {
    for (size_t i = 0; i < locks_.size(); ++i)
      if (!locks_[i]->mutex.try_lock()) {
        while (i-- > 0) locks_[i]->mutex.unlock();
        return false;
      }
    return true;
  }
  // std::lock's algorithm: wait for one lock, try the others; on a miss release all and wait for
  // the one that was busy.
  void lock_all() {
    const size_t n = locks_.size();
    for (size_t first = 0;;) {
      locks_[first]->mutex.lock();
      size_t missed = n;
      for (size_t i = 0; i < n && missed == n; ++i)
        if (i != first && !locks_[i]->mutex.try_lock()) missed = i;
      if (missed == n) return;
      for (size_t i = 0; i < missed; ++i)
        if (i != first) locks_[i]->mutex.unlock();
      locks_[first]->mutex.unlock();
      first = missed;
      std::this_thread::yield();
    }
  }

  std::vector<LayerMutex*> locks_;
};

// A reference to a Python object that C++ can hold (the GIL is taken to drop it).
inline std::shared_ptr<void> hold(const pybind11::handle& obj) {
  auto* held = new pybind11::object(pybind11::reinterpret_borrow<pybind11::object>(obj));
  return std::shared_ptr<void>(held, [](void* p) {
    pybind11::gil_scoped_acquire gil;
    delete static_cast<pybind11::object*>(p);
  });
}

// Keeps the caller's input array alive until the layer's next forward (its backward reads the
// input again); held by the layer's lock, so the input kept is the one its last forward read.
template <class T>
void keep_input(Layer<T>& layer, const pybind11::handle& x) {
  layer.mutex().input_owner = hold(x);
}

}  // namespace fastnn::bind

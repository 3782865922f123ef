// Loading the BLAS behind gemm.h (blas_library.h): dlopen, the symbols, the one-thread setting.
#include "fastnn/kernels/blas_library.h"

#include <dlfcn.h>

#include <atomic>
#include <memory>
#include <mutex>

namespace fastnn::blas {
namespace {

std::mutex g_load_mutex;
std::unique_ptr<Library> g_loaded;         // set once, never freed: GEMMs may be running on it
std::atomic<const Library*> g_active{nullptr};

template <class F>
F symbol(void* handle, const char* name, std::string* error) {
  void* p = dlsym(handle, name);
  if (!p && error->empty()) *error = std::string("symbol ") + name + " not found";
  return reinterpret_cast<F>(p);
}

}  // namespace

const Library* active() { return g_active.load(std::memory_order_acquire); }
const Library* loaded() {
  std::lock_guard<std::mutex> lock(g_load_mutex);
  return g_loaded.get();
}

std::string load(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_load_mutex);
  if (g_loaded) {
    if (g_loaded->path != path) return "a BLAS is already loaded from " + g_loaded->path;
    g_active.store(g_loaded.get(), std::memory_order_release);
    return "";
  }
  // RTLD_LOCAL: the prefixed symbols stay out of the global namespace (numpy's copy and any
  // other BLAS in the process are separate libraries with their own thread settings).
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = dlerror();
    return why ? why : ("dlopen failed for " + path);
  }
  std::string error;
  auto lib = std::make_unique<Library>();
  lib->path = path;
  lib->sgemm = symbol<GemmFunction<float>>(handle, "scipy_cblas_sgemm", &error);
  lib->dgemm = symbol<GemmFunction<double>>(handle, "scipy_cblas_dgemm", &error);
  lib->set_threads = symbol<void (*)(int)>(handle, "scipy_openblas_set_num_threads", &error);
  lib->get_threads = symbol<int (*)()>(handle, "scipy_openblas_get_num_threads", &error);
  auto corename = symbol<const char* (*)()>(handle, "scipy_openblas_get_corename", &error);
  auto config = symbol<const char* (*)()>(handle, "scipy_openblas_get_config", &error);
  if (!error.empty()) {
    dlclose(handle);
    return error + " in " + path;
  }
  // One thread per call: fastnn's OpenMP threads each run the library on their own blocks, so
  // its pthread pool never spins against OpenMP (and the result does not depend on its count).
  lib->set_threads(1);
  lib->core = corename() ? corename() : "";
  lib->config = config() ? config() : "";
  g_loaded = std::move(lib);
  g_active.store(g_loaded.get(), std::memory_order_release);
  return "";
}

bool use_library(bool on) {
  std::lock_guard<std::mutex> lock(g_load_mutex);
  if (on && !g_loaded) return false;
  g_active.store(on ? g_loaded.get() : nullptr, std::memory_order_release);
  return true;
}

}  // namespace fastnn::blas

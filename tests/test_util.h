#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>

#include "runtime/context.h"

namespace clq::test {

// The device under test: CLQ_DEVICE, else the default device. Opened once per process.
inline Context& ctx() {
  static std::shared_ptr<Context> c = Context::open("");
  return *c;
}

// Seed for every random input: CLQ_TEST_SEED, else fixed per process start and printed by main.
inline uint64_t seed() {
  static uint64_t s = [] {
    if (const char* e = std::getenv("CLQ_TEST_SEED")) return uint64_t(std::strtoull(e, nullptr, 10));
    return uint64_t(std::random_device{}()) ^ (uint64_t(std::random_device{}()) << 32);
  }();
  return s;
}

// A fresh temporary directory under /tmp.
inline std::string temp_dir(const std::string& tag) {
  std::string templ = "/tmp/clq-test-" + tag + "-XXXXXX";
  char* p = ::mkdtemp(templ.data());
  return p ? std::string(p) : std::string();
}

// Sets an environment variable for the scope of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_.c_str(), old_.c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

}  // namespace clq::test

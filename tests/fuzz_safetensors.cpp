// libFuzzer target for the safetensors header reader (built with -DCLQ_BUILD_FUZZ=ON and clang;
// tools/test runs it for a bounded time with tests/corpus/safetensors as seeds). Every input must
// parse, or be refused with FormatError; anything else (another exception, a sanitizer report,
// a tensor outside the image) is a crash.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "host/io/safetensors.h"
#include "runtime/status.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<clq::StTensor> tensors;
  std::map<std::string, std::string> meta;
  try {
    clq::parse_safetensors(data, size, "fuzz", &tensors, &meta);
  } catch (const clq::Error& e) {
    if (e.status() != clq::Status::kFormatError) {
      std::fprintf(stderr, "wrong status %s: %s\n", clq::status_name(e.status()), e.what());
      std::abort();
    }
    return 0;
  }
  for (const auto& t : tensors) {
    if (t.data < data || t.data + t.nbytes > data + size || t.data + t.nbytes < t.data) {
      std::fprintf(stderr, "tensor '%s' lies outside the image\n", t.name.c_str());
      std::abort();
    }
  }
  return 0;
}

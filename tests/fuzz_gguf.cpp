// libFuzzer target for the GGUF reader (built with -DCLQ_BUILD_FUZZ=ON and clang; tools/test
// runs it for a bounded time with tests/corpus/gguf as seeds). Every input must parse, or be
// refused with FormatError; anything else (another exception, a sanitizer report, a tensor
// outside the image or overlapping another) is a crash.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "host/io/gguf.h"
#include "runtime/status.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  clq::GgufFile::Parsed p;
  try {
    p = clq::parse_gguf(data, size, "fuzz");
  } catch (const clq::Error& e) {
    if (e.status() != clq::Status::kFormatError) {
      std::fprintf(stderr, "wrong status %s: %s\n", clq::status_name(e.status()), e.what());
      std::abort();
    }
    return 0;
  }
  for (const auto& t : p.tensors) {
    if (t.data < data || t.data + t.nbytes > data + size || t.data + t.nbytes < t.data) {
      std::fprintf(stderr, "tensor '%s' lies outside the image\n", t.name.c_str());
      std::abort();
    }
    if (t.nbytes != clq::ggml_tensor_bytes(t.type, t.ne)) {
      std::fprintf(stderr, "tensor '%s' byte size disagrees with its type and dims\n", t.name.c_str());
      std::abort();
    }
  }
  return 0;
}

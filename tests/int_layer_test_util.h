// Shared by the integer-layer suites (test_w4a16.cpp, test_w8a16_int8.cpp): a synthetic layer
// whose tensor views (and scales, g_idx data) the bad-input tests may change, and the check that a
// call fails with a given status and a message naming the rule.
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "host/synth/synth.h"
#include "runtime/status.h"

namespace clq::test {

struct Mutable {
  W4Synth synth;
  W4Checkpoint ck;
  StTensor qweight, qzeros, scales, g_idx;
  std::vector<uint8_t> scale_bytes;
  std::vector<int32_t> g_idx_data;
  explicit Mutable(W4SynthSpec spec) : synth(spec), ck(synth.checkpoint()) {
    qweight = *ck.qweight;
    if (ck.qzeros) qzeros = *ck.qzeros;
    scales = *ck.scales;
    scale_bytes.assign(scales.data, scales.data + scales.nbytes);
    scales.data = scale_bytes.data();
    if (ck.g_idx) {
      g_idx = *ck.g_idx;
      g_idx_data.resize(size_t(g_idx.shape[0]));
      std::memcpy(g_idx_data.data(), g_idx.data, g_idx.nbytes);
      g_idx.data = reinterpret_cast<const uint8_t*>(g_idx_data.data());
      ck.g_idx = &g_idx;
    }
    ck.qweight = &qweight;
    if (ck.qzeros) ck.qzeros = &qzeros;
    ck.scales = &scales;
  }
};

// f() must throw clq::Error with status `want` and `needle` in its message.
template <class F>
void expect_error(F&& f, Status want, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), want) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

}  // namespace clq::test

// Test entry point that refuses to pass empty: no OpenCL device, no test run, or every test
// skipped is a failure (a skipped suite proves nothing).
#include <gtest/gtest.h>

#include <iostream>

#include "tests/test_util.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  try {
    auto& c = clq::test::ctx();
    std::cout << "[clquant tests] device: " << c.features().platform_name << " / " << c.features().device_name
              << "  (seed " << clq::test::seed() << ", set CLQ_TEST_SEED to repeat)\n";
  } catch (const std::exception& e) {
    std::cerr << "[clquant tests] FAIL: no usable OpenCL device: " << e.what() << "\n";
    return 1;
  }
  int rc = RUN_ALL_TESTS();
  const auto* u = ::testing::UnitTest::GetInstance();
  if (u->test_to_run_count() == 0) {
    std::cerr << "[clquant tests] FAIL: no test ran (check --gtest_filter)\n";
    return 1;
  }
  if (u->skipped_test_count() == u->test_to_run_count()) {
    std::cerr << "[clquant tests] FAIL: every test was skipped\n";
    return 1;
  }
  return rc;
}

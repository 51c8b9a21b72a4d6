// The one place that includes the Khronos C++ bindings, so every file agrees on their settings.
// The minimum is 1.1 because these headers only define the runtime version check that picks
// clCreateCommandQueue vs clCreateCommandQueueWithProperties when the minimum is below 1.2.
// Exceptions stay off in the bindings: clquant checks each cl_int and throws its own clq::Error.
#pragma once
#ifndef CL_HPP_TARGET_OPENCL_VERSION
#define CL_HPP_TARGET_OPENCL_VERSION 300
#endif
#ifndef CL_HPP_MINIMUM_OPENCL_VERSION
#define CL_HPP_MINIMUM_OPENCL_VERSION 110
#endif
#include <CL/opencl.hpp>

/* The C API from C, built with pkg-config:
 *   cc hello_clquant.c $(pkg-config --cflags --libs clquant) -o hello_clquant
 *   ./hello_clquant CKPT PREFIX
 * Loads one layer, runs it on 4 rows of seeded activations (fp32) and prints a checksum. */
#include <clquant/clquant.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: hello_clquant CKPT PREFIX\n");
    return 2;
  }
  clq_context* ctx = NULL;
  clq_linear* layer = NULL;
  int64_t K = 0, N = 0, M = 4;
  int rc = 2;
  if (clq_context_open(NULL, &ctx) != CLQ_SUCCESS) goto fail;
  if (clq_linear_load(ctx, argv[1], argv[2], NULL, 0, &layer) != CLQ_SUCCESS) goto fail;
  clq_linear_shape(layer, &K, &N);
  printf("clquant %s on %s: %s, K=%lld N=%lld\n", clq_version(), clq_context_device_name(ctx),
         clq_linear_describe(layer), (long long)K, (long long)N);
  float* x = malloc(sizeof(float) * (size_t)(M * K));
  float* y = malloc(sizeof(float) * (size_t)(M * N));
  unsigned s = 12345u;
  for (int64_t i = 0; i < M * K; ++i) {
    s = s * 1664525u + 1013904223u;
    x[i] = (float)((s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
  }
  if (clq_linear_run_host(layer, x, CLQ_F32, y, CLQ_F32, M) == CLQ_SUCCESS) {
    double sum = 0;
    for (int64_t i = 0; i < M * N; ++i) sum += fabs(y[i]);
    printf("variant %s, mean |y| = %g\n", clq_linear_last_variant(layer), sum / (double)(M * N));
    rc = sum > 0 && isfinite(sum) ? 0 : 1;
  } else {
    fprintf(stderr, "error: %s\n", clq_last_error());
  }
  free(x);
  free(y);
  clq_linear_release(layer);
  clq_context_release(ctx);
  return rc;
fail:
  fprintf(stderr, "error: %s\n", clq_last_error());
  clq_context_release(ctx);
  return rc;
}

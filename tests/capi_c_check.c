/* Compiled as C: the C API header must stay valid C (no C++ in it) and link from a C object. */
#include "clquant/clquant.h"

#include <string.h>

int clq_c_check_version(void) {
  clq_moe_routing r;
  clq_verify_options o;
  clq_quantize_options q;
  clq_moe_routing_init(&r);
  clq_verify_options_init(&o);
  clq_quantize_options_init(&q);
  return strcmp(clq_version(), CLQ_VERSION_STRING) == 0 && r.top_k == 2 && clq_linear_describe(NULL)[0] == 0 &&
         o.tokens == 5 && o.progress == NULL && clq_report_json(NULL)[0] == 0 &&
         q.max_shard_size == 5000000000ull && strcmp(q.method, "int4") == 0;
}

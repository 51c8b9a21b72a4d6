// Token alignment per expert (vLLM moe_align_block_size semantics, SPEC section 5), one
// work-group of MOE_ALIGN_WG work-items:
//
//   topk_ids [T*k]  ->  sorted_ids [num_post_padded]: flat indices t*k+i grouped by expert,
//                       each expert's run padded to a multiple of block_size with T*k (sentinel)
//                       expert_ids [num_post_padded / block_size]: the expert of each block
//                       num_post_padded = sum_e ceil(cnt_e / bs) * bs
//
// Experts with no tokens get no blocks. expert_map (when has_map) sends an expert to its local
// id or to -1, whose tokens are skipped (expert parallelism). Ids were validated before launch
// (routing makes only valid ids; host-given ids are checked), and an id outside [0, E) is still
// never used as an index here.
//
// Each expert's tokens are placed by one work-item scanning topk_ids in order, so the layout is
// deterministic (no atomics), and runs in O(E * T * k / MOE_ALIGN_WG).
#include "moe/align.clh"

#define MOE_ALIGN_WG 256

__kernel __attribute__((reqd_work_group_size(MOE_ALIGN_WG, 1, 1)))
void moe_align(__global const int* restrict topk_ids, __global const int* restrict expert_map, int has_map, int TK,
               int E, int block_size, __global int* restrict counts,  // scratch [E]: count, then offset
               __global int* restrict sorted_ids, __global int* restrict expert_ids,
               __global int* restrict num_post_padded) {
  clq_moe_align(get_local_id(0), MOE_ALIGN_WG, topk_ids, expert_map, has_map, TK, E, block_size, counts, sorted_ids,
                expert_ids, num_post_padded);
}

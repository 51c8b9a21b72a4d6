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
#define MOE_ALIGN_WG 256

__kernel __attribute__((reqd_work_group_size(MOE_ALIGN_WG, 1, 1)))
void moe_align(__global const int* restrict topk_ids, __global const int* restrict expert_map, int has_map, int TK,
               int E, int block_size, __global int* restrict counts,  // scratch [E]: count, then offset
               __global int* restrict sorted_ids, __global int* restrict expert_ids,
               __global int* restrict num_post_padded) {
  const int lid = get_local_id(0);
  for (int e = lid; e < E; e += MOE_ALIGN_WG) {
    int c = 0;
    for (int i = 0; i < TK; ++i) {
      const int id = topk_ids[i];
      const int le = (id < 0 || id >= E) ? -1 : (has_map ? expert_map[id] : id);
      c += le == e;
    }
    counts[e] = c;
  }
  barrier(CLK_GLOBAL_MEM_FENCE);
  if (lid == 0) {
    int off = 0;
    for (int e = 0; e < E; ++e) {
      const int padded = (counts[e] + block_size - 1) / block_size * block_size;
      for (int b = 0; b < padded / block_size; ++b) expert_ids[off / block_size + b] = e;
      counts[e] = off;  // becomes the run's start
      off += padded;
    }
    num_post_padded[0] = off;
  }
  barrier(CLK_GLOBAL_MEM_FENCE);
  for (int e = lid; e < E; e += MOE_ALIGN_WG) {
    int pos = counts[e];
    const int start = pos;
    for (int i = 0; i < TK; ++i) {
      const int id = topk_ids[i];
      const int le = (id < 0 || id >= E) ? -1 : (has_map ? expert_map[id] : id);
      if (le == e) sorted_ids[pos++] = i;
    }
    const int end = start + (pos - start + block_size - 1) / block_size * block_size;
    for (; pos < end; ++pos) sorted_ids[pos] = TK;
  }
}

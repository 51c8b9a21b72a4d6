// Fused MoE routing (SPEC section 5), one work-item per token.
//
// Top-k decisions compare values computed identically for every candidate, and ties go to the
// lower expert id (strict > in every selection loop). Softmax routing ranks experts by their
// logits (softmax is monotonic), so no rounding in exp can reorder them; the weights use the
// softmax values. Grouped routing ranks by the biased sigmoid (or softmax) scores.
#include "common/act_io.clh"
#include "moe/align.clh"

#ifndef MAX_EXPERTS
#define MAX_EXPERTS 1024  // bound of the private "taken" bit masks
#endif
#ifndef WR_DTYPE
#define WR_DTYPE 0  // router weight: 0 fp32, 1 fp16, 2 bf16
#endif

inline float clq_load_wr(__global const void* p, size_t i) {
#if WR_DTYPE == 0
  return ((__global const float*)p)[i];
#elif WR_DTYPE == 1
  return clq_fp16_to_f32(((__global const ushort*)p)[i]);
#else
  return clq_bf16_to_f32(((__global const ushort*)p)[i]);
#endif
}

// logits[t][e] = x[t] . w_r[e], fp32 accumulation (one work-item per (expert, token)).
__kernel void moe_router_logits(__global const clq_in_t* restrict x, __global const void* restrict wr,
                                __global float* restrict logits, int T, int H, int E) {
  const int e = get_global_id(0), t = get_global_id(1);
  if (e >= E || t >= T) return;
  float acc = 0.0f;
  for (int h = 0; h < H; ++h) acc = fma(clq_load_in(x, (size_t)t * H + h), clq_load_wr(wr, (size_t)e * H + h), acc);
  logits[(size_t)t * E + e] = acc;
}

#define TAKEN(m, e) (((m)[(e) >> 5] >> ((e) & 31)) & 1u)
#define TAKE(m, e) ((m)[(e) >> 5] |= 1u << ((e) & 31))

// Mixtral / Qwen-MoE: p = softmax(l); top-k by p; weights p[top], renormalized if asked.
inline void clq_topk_softmax(int t, __global const float* logits, __global int* ids, __global float* weights, int E,
                             int K, int renormalize) {
  __global const float* l = logits + (size_t)t * E;
  float mx = l[0];
  for (int e = 1; e < E; ++e) mx = fmax(mx, l[e]);
  float sum = 0.0f;
  for (int e = 0; e < E; ++e) sum += exp(l[e] - mx);
  uint taken[MAX_EXPERTS / 32];
  for (int i = 0; i < MAX_EXPERTS / 32; ++i) taken[i] = 0u;
  float wsum = 0.0f;
  for (int j = 0; j < K; ++j) {
    int best = -1;
    for (int e = 0; e < E; ++e)
      if (!TAKEN(taken, e) && (best < 0 || l[e] > l[best])) best = e;
    TAKE(taken, best);
    const float p = exp(l[best] - mx) / sum;
    ids[(size_t)t * K + j] = best;
    weights[(size_t)t * K + j] = p;
    wsum += p;
  }
  if (renormalize)
    for (int j = 0; j < K; ++j) weights[(size_t)t * K + j] /= wsum;
}

__kernel void moe_topk_softmax(__global const float* restrict logits, __global int* restrict ids,
                               __global float* restrict weights, int T, int E, int K, int renormalize) {
  const int t = get_global_id(0);
  if (t < T) clq_topk_softmax(t, logits, ids, weights, E, K, renormalize);
}

// DeepSeek-V3 (noaux_tc): s = sigmoid(l) (or softmax), b = s + bias; groups of E / n_group
// experts scored by the sum of their two largest b; the topk_group best groups stay; top-k by b
// among them; weights = s of the chosen, renormalized if asked, times routed_scaling.
inline float clq_score(__global const float* l, int e, int use_softmax, float mx, float sum) {
  return use_softmax ? exp(l[e] - mx) / sum : 1.0f / (1.0f + exp(-l[e]));
}

inline void clq_topk_grouped(int t, __global const float* logits, __global const float* bias, int has_bias,
                             __global int* ids, __global float* weights, int E, int K, int n_group, int topk_group,
                             int renormalize, float routed_scaling, int use_softmax) {
  __global const float* l = logits + (size_t)t * E;
  float mx = 0.0f, sum = 1.0f;
  if (use_softmax) {
    mx = l[0];
    for (int e = 1; e < E; ++e) mx = fmax(mx, l[e]);
    sum = 0.0f;
    for (int e = 0; e < E; ++e) sum += exp(l[e] - mx);
  }
  const int gsz = E / n_group;
  uint group_kept[MAX_EXPERTS / 32];
  for (int i = 0; i < MAX_EXPERTS / 32; ++i) group_kept[i] = 0u;
  // Pick topk_group groups one at a time; each group's score is recomputed (no private array of
  // n_group floats), which is cheap next to the expert GEMMs.
  for (int pick = 0; pick < topk_group; ++pick) {
    int best_g = -1;
    float best_score = 0.0f;
    for (int g = 0; g < n_group; ++g) {
      if (TAKEN(group_kept, g)) continue;
      float m1 = -INFINITY, m2 = -INFINITY;
      for (int e = g * gsz; e < (g + 1) * gsz; ++e) {
        const float b = clq_score(l, e, use_softmax, mx, sum) + (has_bias ? bias[e] : 0.0f);
        if (b > m1) { m2 = m1; m1 = b; } else if (b > m2) { m2 = b; }
      }
      const float score = m1 + m2;
      if (best_g < 0 || score > best_score) { best_g = g; best_score = score; }
    }
    TAKE(group_kept, best_g);
  }
  uint taken[MAX_EXPERTS / 32];
  for (int i = 0; i < MAX_EXPERTS / 32; ++i) taken[i] = 0u;
  float wsum = 0.0f;
  for (int j = 0; j < K; ++j) {
    int best = -1;
    float best_b = 0.0f;
    for (int e = 0; e < E; ++e) {
      if (TAKEN(taken, e) || !TAKEN(group_kept, e / gsz)) continue;
      const float b = clq_score(l, e, use_softmax, mx, sum) + (has_bias ? bias[e] : 0.0f);
      if (best < 0 || b > best_b) { best = e; best_b = b; }
    }
    TAKE(taken, best);
    const float s = clq_score(l, best, use_softmax, mx, sum);
    ids[(size_t)t * K + j] = best;
    weights[(size_t)t * K + j] = s;
    wsum += s;
  }
  for (int j = 0; j < K; ++j) {
    float w = weights[(size_t)t * K + j];
    if (renormalize) w /= wsum;
    weights[(size_t)t * K + j] = w * routed_scaling;
  }
}

__kernel void moe_topk_grouped(__global const float* restrict logits, __global const float* restrict bias,
                               int has_bias, __global int* restrict ids, __global float* restrict weights, int T,
                               int E, int K, int n_group, int topk_group, int renormalize, float routed_scaling,
                               int use_softmax) {
  const int t = get_global_id(0);
  if (t < T)
    clq_topk_grouped(t, logits, bias, has_bias, ids, weights, E, K, n_group, topk_group, renormalize, routed_scaling,
                     use_softmax);
}

// Decode: top-k of every token and the alignment in one work-group (one launch, no host step
// between them). The group works as TA_TEAMS teams of TA_TEAM work-items, one token per team at
// a time: a team stages the token's scores in local memory and finds each of the k experts by a
// tree arg-max (larger value first, the lower expert id on ties: the rule of the serial
// kernels above), so a token costs k * log2(TA_TEAM) steps instead of one work-item's k * E
// global reads. grouped = 0: softmax routing (bias .. use_softmax unused). E <= MAX_EXPERTS.
#define TOPK_ALIGN_WG 256
#define TA_TEAM 64
#define TA_TEAMS (TOPK_ALIGN_WG / TA_TEAM)

// Tree reduction over the team's TA_TEAM lanes: arg-max of (v, -id), or a sum / max (op 1 / 2).
inline void clq_ta_argmax(__local float* v, __local int* id, int lane) {
  for (int s = TA_TEAM / 2; s > 0; s >>= 1) {
    if (lane < s) {
      const float a = v[lane], b = v[lane + s];
      const int ia = id[lane], ib = id[lane + s];
      const int take_b = ib >= 0 && (ia < 0 || b > a || (b == a && ib < ia));
      if (take_b) {
        v[lane] = b;
        id[lane] = ib;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
}
inline float clq_ta_reduce(__local float* v, int lane, int is_max) {
  for (int s = TA_TEAM / 2; s > 0; s >>= 1) {
    if (lane < s) v[lane] = is_max ? fmax(v[lane], v[lane + s]) : v[lane] + v[lane + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float r = v[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}

__kernel __attribute__((reqd_work_group_size(TOPK_ALIGN_WG, 1, 1)))
void moe_topk_align(__global const float* restrict logits, int grouped, __global const float* restrict bias,
                    int has_bias, __global int* restrict ids, __global float* restrict weights, int T, int E, int K,
                    int n_group, int topk_group, int renormalize, float routed_scaling, int use_softmax,
                    int block_size, __global int* restrict counts, __global int* restrict sorted_ids,
                    __global int* restrict expert_ids, __global int* restrict num_post_padded) {
  __local float key_sh[TA_TEAMS][MAX_EXPERTS];  // ranking value (logit, or biased score)
  __local float val_sh[TA_TEAMS][MAX_EXPERTS];  // weight value (score); -1 marks taken / excluded
  __local float red_v[TA_TEAMS][TA_TEAM];
  __local int red_i[TA_TEAMS][TA_TEAM];
  __local uint keep_sh[TA_TEAMS][MAX_EXPERTS / 32];
  const int lid = get_local_id(0), team = lid / TA_TEAM, lane = lid % TA_TEAM;
  __local float* key = key_sh[team];
  __local float* val = val_sh[team];
  // Every team runs the same number of rounds (barriers are reached by the whole group).
  const int rounds = (T + TA_TEAMS - 1) / TA_TEAMS;
  for (int round = 0; round < rounds; ++round) {
    const int t = round * TA_TEAMS + team;
    const int live = t < T;
    __global const float* l = logits + (size_t)(live ? t : 0) * E;
    // Max and sum of exp for softmax probabilities (both routings may need them).
    float m = -INFINITY;
    for (int e = lane; e < E; e += TA_TEAM) m = fmax(m, l[e]);
    red_v[team][lane] = m;
    barrier(CLK_LOCAL_MEM_FENCE);
    const float mx = clq_ta_reduce(red_v[team], lane, 1);
    float su = 0.0f;
    for (int e = lane; e < E; e += TA_TEAM) su += exp(l[e] - mx);
    red_v[team][lane] = su;
    barrier(CLK_LOCAL_MEM_FENCE);
    const float sum = clq_ta_reduce(red_v[team], lane, 0);
    for (int e = lane; e < E; e += TA_TEAM) {
      if (!grouped) {
        key[e] = l[e];
        val[e] = exp(l[e] - mx) / sum;
      } else {
        const float sc = use_softmax ? exp(l[e] - mx) / sum : 1.0f / (1.0f + exp(-l[e]));
        key[e] = sc + (has_bias ? bias[e] : 0.0f);
        val[e] = sc;
      }
    }
    for (int i = lane; i < MAX_EXPERTS / 32; i += TA_TEAM) keep_sh[team][i] = grouped ? 0u : 0xFFFFFFFFu;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (grouped && n_group <= TA_TEAM) {
      // Lane g scores group g (the sum of its two largest biased scores, as below), then the team
      // picks topk_group groups by tree arg-max: the same groups as the serial walk (larger score
      // first, the lower group on ties), without one work-item reading all E keys per pick.
      const int gsz = E / n_group;
      float score = 0.0f;
      if (lane < n_group) {
        float m1 = -INFINITY, m2 = -INFINITY;
        for (int e = lane * gsz; e < (lane + 1) * gsz; ++e) {
          const float b = key[e];
          if (b > m1) { m2 = m1; m1 = b; } else if (b > m2) { m2 = b; }
        }
        score = m1 + m2;
      }
      int taken = 0;
      for (int pick = 0; pick < topk_group; ++pick) {
        red_v[team][lane] = score;
        red_i[team][lane] = lane < n_group && !taken ? lane : -1;
        barrier(CLK_LOCAL_MEM_FENCE);
        clq_ta_argmax(red_v[team], red_i[team], lane);
        const int best_g = red_i[team][0];
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lane == best_g) taken = 1;
        if (lane == 0 && live && best_g >= 0)
          for (int e = best_g * gsz; e < (best_g + 1) * gsz; ++e) keep_sh[team][e >> 5] |= 1u << (e & 31);
      }
    } else if (grouped && lane == 0 && live) {
      // Groups by the sum of their two largest biased scores, topk_group of them, lower group on ties.
      const int gsz = E / n_group;
      uint gk[MAX_EXPERTS / 32];
      for (int i = 0; i < MAX_EXPERTS / 32; ++i) gk[i] = 0u;
      for (int pick = 0; pick < topk_group; ++pick) {
        int best_g = -1;
        float best_score = 0.0f;
        for (int g = 0; g < n_group; ++g) {
          if (TAKEN(gk, g)) continue;
          float m1 = -INFINITY, m2 = -INFINITY;
          for (int e = g * gsz; e < (g + 1) * gsz; ++e) {
            const float b = key[e];
            if (b > m1) { m2 = m1; m1 = b; } else if (b > m2) { m2 = b; }
          }
          const float score = m1 + m2;
          if (best_g < 0 || score > best_score) { best_g = g; best_score = score; }
        }
        TAKE(gk, best_g);
        for (int e = best_g * gsz; e < (best_g + 1) * gsz; ++e) keep_sh[team][e >> 5] |= 1u << (e & 31);
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float wsum = 0.0f;
    for (int j = 0; j < K; ++j) {
      float bv = 0.0f;
      int bi = -1;
      for (int e = lane; e < E; e += TA_TEAM) {
        if (!((keep_sh[team][e >> 5] >> (e & 31)) & 1u)) continue;
        if (bi < 0 || key[e] > bv) {  // lanes walk ids upwards: strict > keeps the lower id
          bv = key[e];
          bi = e;
        }
      }
      red_v[team][lane] = bv;
      red_i[team][lane] = bi;
      barrier(CLK_LOCAL_MEM_FENCE);
      clq_ta_argmax(red_v[team], red_i[team], lane);
      const int best = red_i[team][0];
      if (lane == 0 && live) {
        const float w = val[best];
        ids[(size_t)t * K + j] = best;
        weights[(size_t)t * K + j] = w;
        wsum += w;
        keep_sh[team][best >> 5] &= ~(1u << (best & 31));  // taken
      }
      barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lane == 0 && live)
      for (int j = 0; j < K; ++j) {
        float w = weights[(size_t)t * K + j];
        if (renormalize) w /= wsum;
        weights[(size_t)t * K + j] = grouped ? w * routed_scaling : w;
      }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  barrier(CLK_GLOBAL_MEM_FENCE);
  // The ids are this group's own writes (the routing makes only ids in [0, E)).
  __local int* cnt_l = (__local int*)key_sh;  // free again: E <= MAX_EXPERTS ints
  __local int* scan_l = (__local int*)val_sh;  // TOPK_ALIGN_WG ints
  clq_moe_align_local(lid, TOPK_ALIGN_WG, ids, T * K, E, block_size, cnt_l, scan_l, sorted_ids, expert_ids,
                      num_post_padded);
}

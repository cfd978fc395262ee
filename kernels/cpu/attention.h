// Causal grouped-query attention, the exact reference (no tiling): per (batch, query head)
// S = scale * Q K^T, masked where the key's position is after the query's, P = softmax(S), O = P V.
// Query head h reads KV head g = h / (Hq / Hkv). With a block selection (MSA's Main Branch, spec §3) a key is
// also masked unless its block (position / block_size) is among the query's selected blocks for its group.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/cpu/eigen_maps.h"

namespace msa::cpu {

struct AttentionShape {
  int64_t batch, tq, tk, hq, hkv, d;  // queries (B, Tq, Hq, d); keys and values (B, Tk, Hkv, d)
  double scale;                       // usually 1/sqrt(d)
  const int32_t* sel = nullptr;       // optional (B, Hkv, Tq, topk) selected block ids, -1 = unused slot
  int64_t topk = 0;
  int64_t block_size = 1;
};

// Fills visible[j] (Tk) for query i of batch b, KV head g: causal, and within a selected block when there is a
// selection.
inline void visible_keys(std::vector<char>& visible, const AttentionShape& s, const int32_t* qpos,
                         const int32_t* kpos, int64_t b, int64_t g, int64_t i) {
  visible.assign(s.tk, 0);
  if (!s.sel) {
    for (int64_t j = 0; j < s.tk; ++j) visible[j] = kpos[j] <= qpos[i];
    return;
  }
  const int32_t* row = s.sel + ((b * s.hkv + g) * s.tq + i) * s.topk;
  for (int64_t j = 0; j < s.tk; ++j) {
    if (kpos[j] > qpos[i]) continue;
    const int32_t blk = static_cast<int32_t>(kpos[j] / s.block_size);
    for (int64_t c = 0; c < s.topk; ++c)
      if (row[c] == blk) {
        visible[j] = 1;
        break;
      }
  }
}

// Key j is visible to query i iff kpos[j] <= qpos[i] (global positions: causal, also under context parallel).
// o (B, Tq, Hq, d); lse (B, Hq, Tq) saved for the backward.
template <class T>
void attention_forward(T* o, T* lse, const T* q, const T* k, const T* v, const int32_t* qpos, const int32_t* kpos,
                       const AttentionShape& s) {
  const int64_t group = s.hq / s.hkv;
  RowMat<T> S(s.tq, s.tk);
  std::vector<char> vis;
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < s.hq; ++h) {
      const int64_t g = h / group;
      auto Q = mat(q + (b * s.tq * s.hq + h) * s.d, s.tq, s.d, s.hq * s.d);
      auto K = mat(k + (b * s.tk * s.hkv + g) * s.d, s.tk, s.d, s.hkv * s.d);
      auto V = mat(v + (b * s.tk * s.hkv + g) * s.d, s.tk, s.d, s.hkv * s.d);
      auto O = mat(o + (b * s.tq * s.hq + h) * s.d, s.tq, s.d, s.hq * s.d);
      S.noalias() = T(s.scale) * Q * K.transpose();
      T* lse_bh = lse + (b * s.hq + h) * s.tq;
      for (int64_t i = 0; i < s.tq; ++i) {
        visible_keys(vis, s, qpos, kpos, b, g, i);
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < s.tk; ++j)
          if (vis[j]) m = std::max(m, S(i, j));
        T sum = 0;
        for (int64_t j = 0; j < s.tk; ++j) {
          T p = vis[j] ? std::exp(S(i, j) - m) : T(0);
          S(i, j) = p;
          sum += p;
        }
        // A query with no visible key (cannot happen with a causal local block, but guard): output 0, lse = -inf.
        if (sum > T(0)) S.row(i) /= sum;
        lse_bh[i] = sum > T(0) ? m + std::log(sum) : -std::numeric_limits<T>::infinity();
      }
      O.noalias() = S * V;
    }
}

// dq written; dk, dv accumulated (+=) because the G query heads of a group share them.
// Flash-attention backward: P from lse, dP = dO V^T, D = rowsum(dO * O), dS = P * (dP - D).
template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* o, const T* lse, const T* q, const T* k, const T* v,
                        const int32_t* qpos, const int32_t* kpos, const AttentionShape& s) {
  const int64_t group = s.hq / s.hkv;
  RowMat<T> P(s.tq, s.tk), dP(s.tq, s.tk);
  std::vector<char> vis;
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < s.hq; ++h) {
      const int64_t g = h / group;
      const int64_t qoff = (b * s.tq * s.hq + h) * s.d, koff = (b * s.tk * s.hkv + g) * s.d;
      auto Q = mat(q + qoff, s.tq, s.d, s.hq * s.d);
      auto O = mat(o + qoff, s.tq, s.d, s.hq * s.d);
      auto dO = mat(dout + qoff, s.tq, s.d, s.hq * s.d);
      auto dQ = mat(dq + qoff, s.tq, s.d, s.hq * s.d);
      auto K = mat(k + koff, s.tk, s.d, s.hkv * s.d);
      auto V = mat(v + koff, s.tk, s.d, s.hkv * s.d);
      auto dK = mat(dk + koff, s.tk, s.d, s.hkv * s.d);
      auto dV = mat(dv + koff, s.tk, s.d, s.hkv * s.d);
      const T* lse_bh = lse + (b * s.hq + h) * s.tq;
      P.noalias() = T(s.scale) * Q * K.transpose();
      for (int64_t i = 0; i < s.tq; ++i) {
        visible_keys(vis, s, qpos, kpos, b, g, i);
        for (int64_t j = 0; j < s.tk; ++j) P(i, j) = vis[j] ? std::exp(P(i, j) - lse_bh[i]) : T(0);
      }
      dP.noalias() = dO * V.transpose();
      for (int64_t i = 0; i < s.tq; ++i) {
        T di = dO.row(i).dot(O.row(i));
        for (int64_t j = 0; j < s.tk; ++j) dP(i, j) = P(i, j) * (dP(i, j) - di);  // now dS
      }
      dQ.noalias() = T(s.scale) * dP * K;
      dK.noalias() += T(s.scale) * dP.transpose() * Q;
      dV.noalias() += P.transpose() * dO;
    }
}

}  // namespace msa::cpu

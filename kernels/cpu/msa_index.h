// MSA Index Branch reference kernels (spec/msa.md §1, §2, §4): block scores and top-k selection, and the KL
// alignment loss with its gradient w.r.t. the index queries and keys.
//
// Shapes: qI (B, Tq, Hkv, dI) and kI (B, Tk, dI) after norm and RoPE; token score s = tau <qI[t,g], kI[j]>.
// Positions qpos (Tq), kpos (Tk) are global; key j is visible to query t iff kpos[j] <= qpos[t]; its block is
// kpos[j] / block_size.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/eigen_maps.h"

namespace msa::cpu {

struct MsaIndexShape {
  int64_t batch, tq, tk, hkv, di;
  double tau;          // 1 / sqrt(dI)
  int64_t block_size;  // B
  int64_t topk;        // k, including forced blocks
  int64_t sink_blocks;
  bool force_local;
  bool mean_pool;      // false: max over the block's visible tokens (default); true: mean
};

// Selection (spec §2): sel (B, Hkv, Tq, k) int32. Forced blocks (sinks, then the local block) count towards k;
// the others are the highest block scores among visible blocks, ties to the lower id. Contract: valid entries
// first (sinks, then picks by descending score), the local block in the last valid slot, unused slots -1.
template <class T>
void msa_select(int32_t* sel, const T* qi, const T* ki, const int32_t* qpos, const int32_t* kpos,
                const MsaIndexShape& s) {
  const int64_t nblk = (*std::max_element(kpos, kpos + s.tk)) / s.block_size + 1;
  RowMat<T> S(s.tq, s.tk);
  std::vector<double> score(nblk);
  std::vector<int64_t> count(nblk);
  std::vector<int32_t> cand;
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t g = 0; g < s.hkv; ++g) {
      auto QI = mat(qi + (b * s.tq * s.hkv + g) * s.di, s.tq, s.di, s.hkv * s.di);
      auto KI = mat(ki + b * s.tk * s.di, s.tk, s.di, s.di);
      S.noalias() = T(s.tau) * QI * KI.transpose();
      for (int64_t i = 0; i < s.tq; ++i) {
        // Block scores over visible tokens.
        std::fill(score.begin(), score.end(), s.mean_pool ? 0.0 : -std::numeric_limits<double>::infinity());
        std::fill(count.begin(), count.end(), 0);
        for (int64_t j = 0; j < s.tk; ++j) {
          if (kpos[j] > qpos[i]) continue;
          const int64_t blk = kpos[j] / s.block_size;
          score[blk] = s.mean_pool ? score[blk] + double(S(i, j)) : std::max(score[blk], double(S(i, j)));
          ++count[blk];
        }
        if (s.mean_pool)
          for (int64_t c = 0; c < nblk; ++c)
            if (count[c]) score[c] /= double(count[c]);
        const int32_t local = static_cast<int32_t>(qpos[i] / s.block_size);
        int32_t* out = sel + ((b * s.hkv + g) * s.tq + i) * s.topk;
        std::fill(out, out + s.topk, -1);
        int64_t n = 0;
        auto forced = [&](int32_t c) { return (c < s.sink_blocks) || (s.force_local && c == local); };
        for (int32_t c = 0; c < std::min<int64_t>(s.sink_blocks, local + 1) && n < s.topk; ++c)
          if (c != local && count[c]) out[n++] = c;
        const bool local_forced = s.force_local || local < s.sink_blocks;
        const int64_t room = s.topk - n - (local_forced && count[local] ? 1 : 0);
        cand.clear();
        for (int32_t c = 0; c <= local; ++c)
          if (count[c] && !forced(c)) cand.push_back(c);
        const int64_t take = std::min<int64_t>(room, int64_t(cand.size()));
        // Exp-free ranking: raw scores, descending, lower id first on ties.
        std::partial_sort(cand.begin(), cand.begin() + take, cand.end(), [&](int32_t a, int32_t c) {
          return score[a] != score[c] ? score[a] > score[c] : a < c;
        });
        bool local_picked = false;
        for (int64_t c = 0; c < take; ++c) {
          if (cand[c] == local) local_picked = true;
          else out[n++] = cand[c];
        }
        if ((local_forced && count[local]) || local_picked) out[n++] = local;
      }
    }
}

struct MsaKlResult {
  double kl_sum = 0;          // sum over (b, t, g) of KL(teacher || student)
  double recall_sum = 0;      // sum over rows of the dense attention mass inside the selected blocks
  double selected_share = 0;  // sum over rows of |selected visible keys| / |causal visible keys|
  int64_t rows = 0;           // (b, t, g) rows counted
};

// KL alignment (spec §4) per (b, g, t). Support: the causal keys when sel_support is null (dense warmup), else
// the keys of the selected blocks. Teacher p̄ = mean over the group's heads of the Main Branch's P on that support
// (recomputed from q, k and the Main Branch's lse, a constant); student π = softmax of s over the support.
// Writes dqi (B, Tq, Hkv, dI) and accumulates dki (B, Tk, dI) with grad_coef * d(sum KL)/d(qI, kI), i.e.
// ds = grad_coef * (π - p̄). With want_recall, also measures the dense-attention mass inside sel's blocks.
template <class T>
MsaKlResult msa_index_kl(T* dqi, T* dki, const T* qi, const T* ki, const T* q, const T* k, const T* lse,
                         const int32_t* sel, bool sparse_support, const int32_t* qpos, const int32_t* kpos,
                         const MsaIndexShape& s, const AttentionShape& main, double grad_coef, bool want_recall) {
  MsaKlResult r;
  const int64_t group = main.hq / main.hkv;
  RowMat<T> Si(s.tq, s.tk), Pbar(s.tq, s.tk), Z(s.tq, s.tk);
  std::vector<char> support, causal, chosen;
  AttentionShape sel_shape = main;
  sel_shape.sel = sel;
  sel_shape.topk = s.topk;
  sel_shape.block_size = s.block_size;
  AttentionShape dense_shape = main;
  dense_shape.sel = nullptr;
  const AttentionShape& support_shape = sparse_support ? sel_shape : dense_shape;
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t g = 0; g < s.hkv; ++g) {
      auto QI = mat(qi + (b * s.tq * s.hkv + g) * s.di, s.tq, s.di, s.hkv * s.di);
      auto dQI = mat(dqi + (b * s.tq * s.hkv + g) * s.di, s.tq, s.di, s.hkv * s.di);
      auto KI = mat(ki + b * s.tk * s.di, s.tk, s.di, s.di);
      auto dKI = mat(dki + b * s.tk * s.di, s.tk, s.di, s.di);
      Si.noalias() = T(s.tau) * QI * KI.transpose();
      // Teacher: mean over the group's heads of exp(z - lse) on the support.
      Pbar.setZero();
      std::vector<double> recall(s.tq, 0.0);
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        auto Q = mat(q + (b * main.tq * main.hq + h) * main.d, main.tq, main.d, main.hq * main.d);
        auto K = mat(k + (b * main.tk * main.hkv + g) * main.d, main.tk, main.d, main.hkv * main.d);
        Z.noalias() = T(main.scale) * Q * K.transpose();
        const T* lse_bh = lse + (b * main.hq + h) * main.tq;
        for (int64_t i = 0; i < s.tq; ++i) {
          visible_keys(support, support_shape, qpos, kpos, b, g, i);
          for (int64_t j = 0; j < s.tk; ++j)
            if (support[j]) Pbar(i, j) += std::exp(Z(i, j) - lse_bh[i]) / T(group);
          if (want_recall) {  // dense causal softmax of this head; its mass inside the selected blocks
            visible_keys(causal, dense_shape, qpos, kpos, b, g, i);
            visible_keys(chosen, sel_shape, qpos, kpos, b, g, i);
            double m = -std::numeric_limits<double>::infinity(), tot = 0, in = 0;
            for (int64_t j = 0; j < s.tk; ++j)
              if (causal[j]) m = std::max(m, double(Z(i, j)));
            for (int64_t j = 0; j < s.tk; ++j)
              if (causal[j]) {
                const double e = std::exp(double(Z(i, j)) - m);
                tot += e;
                if (chosen[j]) in += e;
              }
            recall[i] += in / tot / double(group);
          }
        }
      }
      // Student, KL and its gradient on the support.
      for (int64_t i = 0; i < s.tq; ++i) {
        visible_keys(support, support_shape, qpos, kpos, b, g, i);
        visible_keys(chosen, sel_shape, qpos, kpos, b, g, i);
        double m = -std::numeric_limits<double>::infinity();
        int64_t n_chosen = 0, n_causal = 0;
        for (int64_t j = 0; j < s.tk; ++j) {
          if (support[j]) m = std::max(m, double(Si(i, j)));
          n_chosen += chosen[j];
          n_causal += kpos[j] <= qpos[i];
        }
        double z = 0;
        for (int64_t j = 0; j < s.tk; ++j)
          if (support[j]) z += std::exp(double(Si(i, j)) - m);
        const double lse_i = m + std::log(z);
        double kl = 0;
        for (int64_t j = 0; j < s.tk; ++j) {
          if (!support[j]) {
            Si(i, j) = 0;
            continue;
          }
          const double logpi = double(Si(i, j)) - lse_i, pb = double(Pbar(i, j));
          if (pb > 0) kl += pb * (std::log(pb) - logpi);
          Si(i, j) = T(grad_coef * (std::exp(logpi) - pb));  // now ds
        }
        r.kl_sum += kl;
        r.recall_sum += recall[i];
        r.selected_share += n_causal ? double(n_chosen) / double(n_causal) : 0.0;
        ++r.rows;
      }
      if (grad_coef != 0) {
        dQI.noalias() = T(s.tau) * Si * KI;
        dKI.noalias() += T(s.tau) * Si.transpose() * QI;
      } else {
        dQI.setZero();
      }
    }
  return r;
}

}  // namespace msa::cpu

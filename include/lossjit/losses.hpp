// The loss library: each loss is a plain DSL expression (read it, print it, change it). Inputs
// are named by template arguments with the usual defaults (logits "u", label "y", target
// probabilities "p", class weights "w"); options that are numbers are `param`s, whose values
// are given when a kernel is compiled (CompileOptions::params), so one kernel serves any value.
//
// Each comment gives the formula per row and the gradient the simplifier derives (tested in
// tests/core/test_losses.cpp; tests/pytorch compares them with PyTorch's own values). Batch-level
// options (reduction, ignore_index, the weighted mean's denominator) are set on the kernel's run:
// see lossjit::Batch in lossjit/kernel.hpp.
#pragma once

#include "lossjit/expr.hpp"

namespace lossjit::losses {

using namespace lossjit::dsl;

// Softmax cross-entropy with an integer label: -log softmax(u)_y.
// Simplified: logsumexp(u) - at(u, y). Gradient: softmax(u) - onehot(y).
template <fixed_string U = "u", fixed_string Y = "y">
constexpr auto cross_entropy() {
    return -at(log_softmax(logits<U>), label<Y>);
}

// Softmax cross-entropy with probability targets: -sum_k p_k log softmax(u)_k.
// Simplified: logsumexp(u) - dot(p, u). Gradient: softmax(u) - p.
template <fixed_string U = "u", fixed_string P = "p">
constexpr auto soft_cross_entropy() {
    return -sum(probs<P> * log_softmax(logits<U>));
}

// Class-weighted cross-entropy, PyTorch's `weight=`: -w_y log softmax(u)_y. With mean reduction
// PyTorch divides by the sum of w_y over the batch's (not ignored) rows: `row_weight` below.
// Gradient: w_y (softmax(u) - onehot(y)).
template <fixed_string U = "u", fixed_string Y = "y", fixed_string W = "w">
constexpr auto weighted_cross_entropy() {
    return -at(weights<W>, label<Y>) * at(log_softmax(logits<U>), label<Y>);
}

// The weight a row carries in a weighted mean (PyTorch's denominator): w_y.
template <fixed_string Y = "y", fixed_string W = "w">
constexpr auto row_weight() {
    return at(weights<W>, label<Y>);
}

// Label smoothing, PyTorch's convention: eps spread as eps/K over all classes,
//   -(1 - eps) log softmax(u)_y - (eps / K) sum_k log softmax(u)_k.
// Gradient: softmax(u) - (1 - eps) onehot(y) - eps / K.
template <fixed_string U = "u", fixed_string Y = "y", fixed_string Eps = "label_smoothing">
constexpr auto label_smoothing_cross_entropy() {
    constexpr auto ls = log_softmax(logits<U>);
    return -(1 - param<Eps>) * at(ls, label<Y>) - param<Eps> / K * sum(ls);
}

// Label smoothing with class weights, exactly as PyTorch computes it:
//   -(1 - eps) w_y log softmax(u)_y - (eps / K) sum_k w_k log softmax(u)_k,
// and a weighted mean divides by sum of w_y (row_weight), as for weighted_cross_entropy.
template <fixed_string U = "u", fixed_string Y = "y", fixed_string W = "w", fixed_string Eps = "label_smoothing">
constexpr auto weighted_label_smoothing_cross_entropy() {
    constexpr auto ls = log_softmax(logits<U>);
    return -(1 - param<Eps>) * at(weights<W>, label<Y>) * at(ls, label<Y>) - param<Eps> / K * dot(weights<W>, ls);
}

// z-loss (PaLM): scale * logsumexp(u)^2, added to a cross-entropy or used on its own.
// Gradient: 2 scale logsumexp(u) softmax(u).
template <fixed_string U = "u", fixed_string Scale = "z_loss">
constexpr auto z_loss() {
    return param<Scale> * pow(logsumexp(logits<U>), 2);
}

// Cross-entropy plus z-loss.
template <fixed_string U = "u", fixed_string Y = "y", fixed_string Scale = "z_loss">
constexpr auto cross_entropy_with_z_loss() {
    return cross_entropy<U, Y>() + z_loss<U, Scale>();
}

// Logit soft-capping (Gemma): cap * tanh(u / cap) before the softmax.
// Gradient: (softmax(c) - onehot(y)) * (1 - tanh(u / cap)^2), with c the capped logits.
template <fixed_string U = "u", fixed_string Y = "y", fixed_string Cap = "softcap">
constexpr auto softcapped_cross_entropy() {
    return -at(log_softmax(param<Cap> * tanh(logits<U> / param<Cap>)), label<Y>);
}

// Temperature: cross-entropy of softmax(u / T). Gradient: (softmax(u / T) - onehot(y)) / T.
template <fixed_string U = "u", fixed_string Y = "y", fixed_string T = "temperature">
constexpr auto tempered_cross_entropy() {
    return -at(log_softmax(logits<U> / param<T>), label<Y>);
}

// KL divergence from target probabilities p to softmax(u): sum_k p_k (log p_k - log softmax(u)_k).
// Classes with p_k = 0 add nothing (0 * log 0 = 0). Gradient: softmax(u) - p.
template <fixed_string U = "u", fixed_string P = "p">
constexpr auto kl_divergence() {
    return sum(probs<P> * (log(probs<P>) - log_softmax(logits<U>)));
}

// Distillation (Hinton et al.): T^2 KL(softmax(t / T) || softmax(s / T)), teacher logits t,
// student logits s; differentiate with respect to the student only (wrt(s)).
// Gradient: T (softmax(s / T) - softmax(t / T)).
template <fixed_string S = "s", fixed_string Teacher = "t", fixed_string T = "temperature">
constexpr auto distillation_kl() {
    constexpr auto tau = param<T>;
    constexpr auto teacher = log_softmax(logits<Teacher> / tau);
    return tau * tau * sum(exp(teacher) * (teacher - log_softmax(logits<S> / tau)));
}

// Binary cross-entropy with logits for multi-label rows (PyTorch's BCEWithLogitsLoss with
// pos_weight), averaged over the row's K labels as PyTorch's mean does:
//   -(1/K) sum_k [pw_k p_k log sigmoid(u_k) + (1 - p_k) log(1 - sigmoid(u_k))].
// p holds per-class targets in [0, 1] (not a distribution), so it is bound as `weights`.
template <fixed_string U = "u", fixed_string P = "targets", fixed_string PW = "pos_weight">
constexpr auto binary_cross_entropy_with_logits() {
    constexpr auto u = logits<U>;
    constexpr auto p = weights<P>;
    return -sum(weights<PW> * p * log(sigmoid(u)) + (1 - p) * log(1 - sigmoid(u))) / K;
}

// The same without pos_weight. Gradient: (sigmoid(u) - p) / K.
template <fixed_string U = "u", fixed_string P = "targets">
constexpr auto binary_cross_entropy() {
    constexpr auto u = logits<U>;
    constexpr auto p = weights<P>;
    return -sum(p * log(sigmoid(u)) + (1 - p) * log(1 - sigmoid(u))) / K;
}

// Softmax focal loss (Lin et al.): -(1 - p_y)^gamma log p_y with p = softmax(u). Finite at
// gamma = 0 and where p_y reaches 0 or 1: the simplified form uses logsumexp and expm1.
template <fixed_string U = "u", fixed_string Y = "y", fixed_string Gamma = "gamma">
constexpr auto focal() {
    constexpr auto ls = at(log_softmax(logits<U>), label<Y>);
    return -pow(1 - exp(ls), param<Gamma>) * ls;
}

// Poly-1 cross-entropy (Leng et al.): CE + epsilon (1 - p_y).
template <fixed_string U = "u", fixed_string Y = "y", fixed_string Eps = "poly_epsilon">
constexpr auto poly1_cross_entropy() {
    return cross_entropy<U, Y>() + param<Eps> * (1 - at(softmax(logits<U>), label<Y>));
}

}  // namespace lossjit::losses

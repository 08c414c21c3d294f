// The activations a FusedConv can apply in its epilogue (optimize/fuse_conv_activation.h), shared
// by every backend: the attribute's spelling, and the reference definition in double.
#pragma once

#include <cmath>
#include <string>

#include "kestrel/base/attributes.h"
#include "kestrel/base/status.h"

namespace kestrel::runtime {

enum class Activation {
  kNone,
  kRelu,
  kLeakyRelu,
  kSigmoid,
  kHardSigmoid,
  kHardSwish,
  kClip,
  kSilu
};

struct ActivationSpec {
  Activation kind = Activation::kNone;
  float alpha = 0;  // LeakyRelu's slope, HardSigmoid's alpha, Clip's min
  float beta = 0;   // HardSigmoid's beta, Clip's max
};

// From FusedConv's activation, activation_alpha and activation_beta attributes.
inline StatusOr<ActivationSpec> parse_activation(const Attributes& attrs) {
  const std::string name = attrs.get_string("activation", "");
  ActivationSpec s{Activation::kNone, attrs.get_float("activation_alpha", 0.f),
                   attrs.get_float("activation_beta", 0.f)};
  if (name.empty())
    s.kind = Activation::kNone;
  else if (name == "Relu")
    s.kind = Activation::kRelu;
  else if (name == "LeakyRelu")
    s.kind = Activation::kLeakyRelu;
  else if (name == "Sigmoid")
    s.kind = Activation::kSigmoid;
  else if (name == "HardSigmoid")
    s.kind = Activation::kHardSigmoid;
  else if (name == "HardSwish")
    s.kind = Activation::kHardSwish;
  else if (name == "Clip")
    s.kind = Activation::kClip;
  else if (name == "Silu")
    s.kind = Activation::kSilu;
  else
    return unimplemented("activation '{}' is not supported", name);
  return s;
}

// The activation of x, as the unfused operators define it (Clip: min then max).
inline double apply_activation(const ActivationSpec& a, double x) {
  switch (a.kind) {
    case Activation::kNone:
      return x;
    case Activation::kRelu:
      return x < 0 ? 0 : x;
    case Activation::kLeakyRelu:
      return x < 0 ? a.alpha * x : x;
    case Activation::kSigmoid:
      return 1 / (1 + std::exp(-x));
    case Activation::kHardSigmoid:
      return std::fmax(0.0, std::fmin(1.0, a.alpha * x + a.beta));
    case Activation::kHardSwish:
      return x * std::fmax(0.0, std::fmin(1.0, x / 6 + 0.5));
    case Activation::kClip: {
      const double lo = a.alpha, hi = a.beta;
      return lo > hi ? hi : (x < lo ? lo : (x > hi ? hi : x));
    }
    case Activation::kSilu:
      return x / (1 + std::exp(-x));
  }
  return x;
}

}  // namespace kestrel::runtime

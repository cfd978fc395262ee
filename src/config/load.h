// Loading a RunConfig from YAML plus --set overrides, strictly: every problem is a UserError that names the
// key and where its value came from ("configs/tiny.yaml:7" or "--set train.lr=-1").
#pragma once
#include <string>
#include <vector>

#include "config/config.h"

namespace msa {

struct ConfigOverride {
  std::string path;   // "train.lr"
  std::string value;  // YAML scalar text, "1e-3"
};

// "a.b=v" -> {"a.b", "v"}; the value may contain '=' and may be empty. Bad syntax throws UserError.
ConfigOverride parse_override(const std::string& arg);

// Reads the file, applies the overrides in order (later ones win) and validates every key and the
// cross-field rules. Keys absent from both keep the defaults of config.h.
RunConfig load_config(const std::string& file, const std::vector<ConfigOverride>& overrides);

// As load_config, from text; source_name stands in for the file name in messages.
RunConfig load_config_string(const std::string& yaml_text, const std::string& source_name,
                             const std::vector<ConfigOverride>& overrides);

// Checks the parallel layout against the MPI world: dp*cp == world_size, ep divides dp*cp, and the
// per-step sequences split evenly over dp.
void validate_layout(const RunConfig& c, int world_size);

// The resolved config with every key; load_config_string reads it back to an identical RunConfig.
std::string to_yaml(const RunConfig& c);

// Dims per head that RoPE rotates: round(rotary_fraction * head_dim). The model must use this same rule.
// The layers named by a layer set such as attention.dense_layers ("0", "0-2", "0,5", "none"), as a mask over
// n_layers; `key` names the setting in error messages.
std::vector<bool> parse_layer_set(const std::string& text, int64_t n_layers,
                                  const std::string& key = "attention.dense_layers");

int64_t rotary_dims(const ModelConfig& m);

}  // namespace msa

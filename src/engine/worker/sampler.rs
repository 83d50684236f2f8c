//! Building llama.cpp sampler chains from [`SamplingParams`].
//!
//! Order matters: the grammar goes first so truncation (top-k/top-p/min-p) can never
//! remove every token the grammar allows; penalties next; then truncation,
//! temperature and the final draw. Temperature 0 means greedy.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;

use crate::engine::protocol::{Constraint, SamplingParams, WorkerError};

/// GBNF for any JSON value whose top level is an object (OpenAI's `json_object`).
/// Whitespace between tokens is bounded so a model cannot loop on spaces forever.
const JSON_OBJECT_GBNF: &str = r#"
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt/] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9]{1,4})? ws
ws     ::= | " " | "\n" [ \t]{0,20}
"#;

/// Builds the chain for one request.
pub fn build(model: &LlamaModel, params: &SamplingParams) -> Result<LlamaSampler, WorkerError> {
    let mut chain = Vec::new();
    if let Some(constraint) = &params.constraint {
        let grammar =
            match constraint {
                Constraint::JsonObject => JSON_OBJECT_GBNF.to_string(),
                Constraint::JsonSchema(schema) => llama_cpp_2::json_schema_to_grammar(schema)
                    .map_err(|e| WorkerError::InvalidConstraint {
                        message: format!("cannot turn the JSON schema into a grammar: {e}"),
                    })?,
                Constraint::Grammar(g) => g.clone(),
            };
        chain.push(LlamaSampler::grammar(model, &grammar, "root").map_err(|e| {
            WorkerError::InvalidConstraint {
                message: format!("the grammar was rejected: {e}"),
            }
        })?);
    }
    let penalised = params.repeat_penalty != 1.0
        || params.frequency_penalty != 0.0
        || params.presence_penalty != 0.0;
    if penalised {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            params.repeat_last_n,
            params.repeat_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        ));
    }
    if params.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if params.top_k > 0 {
            chain.push(LlamaSampler::top_k(params.top_k));
        }
        if params.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(params.top_p, 1));
        }
        if params.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(params.min_p, 1));
        }
        chain.push(LlamaSampler::temp(params.temperature));
        chain.push(LlamaSampler::dist(params.seed.unwrap_or_else(rand_seed)));
    }
    Ok(LlamaSampler::chain_simple(chain))
}

fn rand_seed() -> u32 {
    // Fresh randomness per request without another dependency.
    uuid::Uuid::new_v4().as_u128() as u32
}

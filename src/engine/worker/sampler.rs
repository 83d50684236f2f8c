//! Sampling one token per step from [`SamplingParams`], without ever letting a request
//! crash the shared process.
//!
//! The grammar is kept apart from the rest of the chain: after it is applied, a step
//! where it allows no token at all ends that request with an error instead of sampling
//! from nothing, and the chosen token is accepted through the exception-catching entry
//! point (llama.cpp throws from grammar acceptance; an exception crossing into Rust
//! would abort the worker and every other tenant's stream with it).
//!
//! Order: grammar first so truncation (top-k/top-p/min-p) can never remove every token
//! the grammar allows; penalties next; then truncation, temperature and the draw.
//! Temperature 0 means greedy.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;

use crate::engine::protocol::{Constraint, SamplingParams, WorkerError};

/// GBNF for any JSON value whose top level is an object (OpenAI's `json_object`).
/// Whitespace between tokens is bounded so a model cannot loop on spaces forever.
pub const JSON_OBJECT_GBNF: &str = r#"
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt/] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9]{1,4})? ws
ws     ::= | " " | "\n" [ \t]{0,20}
"#;

/// One request's samplers.
pub struct Chain {
    grammar: Option<LlamaSampler>,
    rest: LlamaSampler,
}

/// A GBNF string literal.
fn literal(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Start rule of a tool-call grammar ([`framed_calls`]).
const CALLS_START: &str = "tool-calls";

/// Adds to the grammar of one call (start rule `root`, which it may reference
/// recursively) a start rule [`CALLS_START`] for its framing: `open` call `close`, once
/// or (parallel) one or more times on their own lines.
fn framed_calls(call: &str, open: &str, close: &str, parallel: bool) -> String {
    let one = format!("{} root {}", literal(open), literal(close));
    let start = if parallel {
        format!("{CALLS_START} ::= {one} (\"\\n\" {one})*")
    } else {
        format!("{CALLS_START} ::= {one}")
    };
    format!("{start}\n{call}\n")
}

fn invalid(message: &str) -> WorkerError {
    WorkerError::InvalidConstraint {
        message: message.to_string(),
    }
}

impl Chain {
    /// Builds the samplers for one request. `n_ctx` bounds `repeat_last_n = -1`.
    pub fn build(
        model: &LlamaModel,
        params: &SamplingParams,
        n_ctx: u32,
    ) -> Result<Chain, WorkerError> {
        let grammar = match &params.constraint {
            None => None,
            Some(constraint) => {
                let mut start = "root";
                let text = match constraint {
                    Constraint::JsonObject => JSON_OBJECT_GBNF.to_string(),
                    Constraint::JsonSchema(schema) => llama_cpp_2::json_schema_to_grammar(schema)
                        .map_err(|_| {
                        invalid("the JSON schema could not be turned into a grammar")
                    })?,
                    Constraint::Grammar(g) => g.clone(),
                    Constraint::ToolCalls {
                        schema,
                        open,
                        close,
                        parallel,
                    } => {
                        let call = llama_cpp_2::json_schema_to_grammar(schema).map_err(|_| {
                            invalid("a tool's parameters could not be turned into a grammar")
                        })?;
                        start = CALLS_START;
                        framed_calls(&call, open, close, *parallel)
                    }
                };
                Some(
                    LlamaSampler::grammar(model, &text, start)
                        .map_err(|_| invalid("the grammar was rejected by llama.cpp's parser (check its syntax and that every rule it uses is defined)"))?,
                )
            }
        };
        let mut chain = Vec::new();
        let penalised = params.repeat_penalty != 1.0
            || params.frequency_penalty != 0.0
            || params.presence_penalty != 0.0;
        if penalised {
            let last_n = match params.repeat_last_n {
                n if n < 0 => i32::try_from(n_ctx).unwrap_or(i32::MAX),
                n => n.min(i32::try_from(n_ctx).unwrap_or(i32::MAX)),
            };
            chain.push(LlamaSampler::penalties(
                model.n_vocab(),
                last_n,
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
        Ok(Chain {
            grammar,
            rest: LlamaSampler::chain_simple(chain),
        })
    }

    /// Samples and accepts the next token from the logits at batch index `at`, using
    /// `scratch` as the candidate buffer (reused across steps).
    pub fn sample(
        &mut self,
        ctx: &LlamaContext<'_>,
        at: i32,
        scratch: &mut LlamaTokenDataArray,
    ) -> Result<LlamaToken, WorkerError> {
        scratch.data.clear();
        scratch.data.extend(
            ctx.get_logits_ith(at)
                .iter()
                .enumerate()
                .map(|(i, logit)| LlamaTokenData::new(LlamaToken(i as i32), *logit, 0.0)),
        );
        scratch.selected = None;
        scratch.sorted = false;
        if let Some(grammar) = self.grammar.as_mut() {
            scratch.apply_sampler(grammar);
            if scratch.data.iter().all(|d| d.logit() == f32::NEG_INFINITY) {
                return Err(invalid(
                    "the grammar allows no further token here, so generation cannot continue",
                ));
            }
        }
        scratch.apply_sampler(&mut self.rest);
        let token = scratch
            .selected_token()
            .ok_or_else(|| invalid("no token could be sampled"))?;
        if let Some(grammar) = self.grammar.as_mut() {
            grammar
                .try_accept(token)
                .map_err(|_| invalid("the grammar refused the sampled token"))?;
        }
        self.rest.accept(token);
        Ok(token)
    }
}

fn rand_seed() -> u32 {
    // Fresh randomness per request without another dependency.
    uuid::Uuid::new_v4().as_u128() as u32
}

//! The reference side of `bench/llm.py`: llama.cpp's raw speed on this machine through
//! the same llama.cpp build the appliance links, measured the way llama-bench does
//! (pp: one batch of N random tokens; tg: N single-token decodes of random tokens),
//! with no HTTP, no sampling and no scheduling. Prints one JSON line.
//!
//! `cargo bench --bench raw_decode -- MODEL.gguf [THREADS] [N_PROMPT] [N_GEN] [REPS]`

use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let model_path = args.first().ok_or_else(|| {
        anyhow::anyhow!("usage: raw_decode MODEL [THREADS] [N_PROMPT] [N_GEN] [REPS]")
    })?;
    let num = |i: usize, default: u32| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let (threads, n_prompt, n_gen, reps) = (num(1, 2), num(2, 512), num(3, 128), num(4, 3));

    let mut backend = LlamaBackend::init()?;
    backend.void_logs();
    let model = LlamaModel::load_from_file(&backend, model_path, &LlamaModelParams::default())?;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_prompt + n_gen + 16))
        .with_n_batch(n_prompt.max(512))
        .with_n_ubatch(512)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32);
    let mut ctx = model.new_context(&backend, params)?;
    let n_vocab = model.n_vocab() as u64;
    // A fixed pseudo-random token sequence (xorshift), as llama-bench uses random tokens.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut random_token = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        LlamaToken((state % n_vocab) as i32)
    };

    let mut pp = Vec::new();
    let mut tg = Vec::new();
    for rep in 0..=reps {
        ctx.clear_kv_cache();
        let mut batch = LlamaBatch::new(n_prompt as usize, 1);
        for i in 0..n_prompt {
            batch.add(random_token(), i as i32, &[0], i == n_prompt - 1)?;
        }
        let t = Instant::now();
        ctx.decode(&mut batch)?;
        let pp_rate = n_prompt as f64 / t.elapsed().as_secs_f64();

        ctx.clear_kv_cache();
        let t = Instant::now();
        for i in 0..n_gen {
            let mut one = LlamaBatch::new(1, 1);
            one.add(random_token(), i as i32, &[0], true)?;
            ctx.decode(&mut one)?;
        }
        let tg_rate = n_gen as f64 / t.elapsed().as_secs_f64();
        if rep > 0 {
            // The first repetition warms caches and is not counted, as llama-bench does.
            pp.push(pp_rate);
            tg.push(tg_rate);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let sd = |v: &[f64]| {
        let m = mean(v);
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt()
    };
    println!(
        "{{\"threads\":{threads},\"n_prompt\":{n_prompt},\"n_gen\":{n_gen},\"reps\":{reps},\"pp_tps\":{:.2},\"pp_sd\":{:.2},\"tg_tps\":{:.2},\"tg_sd\":{:.2}}}",
        mean(&pp),
        sd(&pp),
        mean(&tg),
        sd(&tg)
    );
    Ok(())
}

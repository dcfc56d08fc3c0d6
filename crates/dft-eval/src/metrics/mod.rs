//! Metrics that need no model: QA F1 / exact match with each dataset's official normalisation
//! ([`qa`]), multiple-choice acc / acc_norm from log-likelihoods ([`multiple_choice`]), and corpus
//! chrF++ ([`chrf`]) and BLEU ([`bleu`]) with sacrebleu's definitions, applied per translation
//! direction by [`translation`].
pub mod bleu;
pub mod chrf;
pub mod multiple_choice;
pub mod qa;
pub mod translation;

pub use bleu::{corpus_bleu, corpus_bleu_13a, BleuConfig, BleuScore, BleuSmoothing, BleuTokenizer};
pub use chrf::{corpus_chrf, corpus_chrf_pp, ChrfConfig, ChrfScore};
pub use multiple_choice::{score_multiple_choice, MCResult, McPrediction};
pub use qa::{exact_match, f1_score, normalize_answer, score_generative, F1Result, QaNormalization, QaScore};
pub use translation::{score_translation, TranslationScore};

//! XQuAD and MLQA: SQuAD v1.1 JSON (`{data: [{title, paragraphs: [{context, qas: [{id, question,
//! answers: [{text, answer_start}]}]}]}]}`) into generative items with the
//! `"Context: …\n\nQuestion: …\n\nAnswer:"` prompt and all gold answer texts.
use std::path::Path;

use serde::Deserialize;

use crate::error::{EvalError, Result};
use crate::items::GenerativeItem;
use crate::prompts::qa_prompt;
use crate::tasks::io::read_json;

#[derive(Deserialize)]
struct SquadFile {
    data: Vec<Article>,
}

#[derive(Deserialize)]
struct Article {
    paragraphs: Vec<Paragraph>,
}

#[derive(Deserialize)]
struct Paragraph {
    context: String,
    qas: Vec<Qa>,
}

#[derive(Deserialize)]
struct Qa {
    id: String,
    question: String,
    answers: Vec<Answer>,
}

#[derive(Deserialize)]
struct Answer {
    text: String,
}

/// Loads every question of a SQuAD v1.1 file, in file order. A question without answers is an
/// error (the official scripts cannot score it).
pub fn load_squad(path: &Path) -> Result<Vec<GenerativeItem>> {
    let file: SquadFile = read_json(path)?;
    let mut items = Vec::new();
    for article in file.data {
        for paragraph in article.paragraphs {
            for qa in paragraph.qas {
                if qa.answers.is_empty() {
                    return Err(EvalError::InvalidRecord {
                        path: path.to_path_buf(),
                        record: qa.id,
                        message: "question has no answers".into(),
                    });
                }
                items.push(GenerativeItem {
                    prompt: qa_prompt(&paragraph.context, &qa.question),
                    answers: qa.answers.into_iter().map(|a| a.text).collect(),
                    id: qa.id,
                });
            }
        }
    }
    Ok(items)
}

//! Is it a recording? A host that serves an error page with 200 is the failure guarded
//! against: the Content-Type and the first bytes must both say audio.

/// Why the downloaded body is not a recording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAudio {
    #[error("Content-Type is {0}")]
    ContentType(String),
    #[error("the body is empty")]
    Empty,
    #[error("the first bytes are neither MP3 nor WAV")]
    UnknownFormat,
}

/// Accepts `audio/*`, octet streams, and an absent or empty type.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), NotAudio> {
    let Some(ct) = content_type else {
        return Ok(());
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let acceptable = essence.starts_with("audio/")
        || essence == "application/octet-stream"
        || essence == "binary/octet-stream"
        || essence.is_empty();
    if acceptable {
        Ok(())
    } else {
        Err(NotAudio::ContentType(essence))
    }
}

/// The content type from the first bytes: MP3 (ID3 tag or MPEG frame sync) or WAV (RIFF/WAVE).
pub fn sniff_audio(head: &[u8]) -> Result<&'static str, NotAudio> {
    match head {
        [b'I', b'D', b'3', ..] => Ok("audio/mpeg"),
        [0xFF, b1, ..] if b1 & 0xE0 == 0xE0 => Ok("audio/mpeg"),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'A', b'V', b'E', ..] => Ok("audio/wav"),
        [] => Err(NotAudio::Empty),
        _ => Err(NotAudio::UnknownFormat),
    }
}

/// The content type an archived key stands for (its extension was chosen from the URL).
pub fn content_type_for(key: &str) -> &'static str {
    if key.ends_with(".wav") {
        "audio/wav"
    } else {
        "audio/mpeg"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_mp3_and_wav_and_nothing_else() {
        assert_eq!(sniff_audio(b"ID3\x04rest"), Ok("audio/mpeg"));
        assert_eq!(sniff_audio(&[0xFF, 0xFB, 0x90]), Ok("audio/mpeg"));
        assert_eq!(sniff_audio(b"RIFF\0\0\0\0WAVEfmt "), Ok("audio/wav"));
        assert_eq!(sniff_audio(b""), Err(NotAudio::Empty));
        assert_eq!(
            sniff_audio(b"<!DOCTYPE html>"),
            Err(NotAudio::UnknownFormat)
        );
        assert_eq!(check_content_type(Some("audio/mpeg; charset=x")), Ok(()));
        assert_eq!(check_content_type(None), Ok(()));
        assert_eq!(
            check_content_type(Some("Text/HTML; charset=utf-8")),
            Err(NotAudio::ContentType("text/html".into()))
        );
        assert_eq!(content_type_for("recordings/2022/12/19/1.wav"), "audio/wav");
    }
}

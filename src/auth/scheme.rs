//! Password schemes: the `{SCHEME}data` field of the passwd-file.
//!
//! Verification understands what Dovecot writes for the schemes we support:
//!
//! * `{ARGON2ID}` / `{ARGON2I}`: a PHC string `$argon2id$v=19$m=..,t=..,p=..$salt$hash`
//!   (either argon2 variant is accepted under either name, as libsodium does).
//! * `{SHA512-CRYPT}`: a glibc `$6$[rounds=N$]salt$hash` string. `{CRYPT}`, and a field with no
//!   `{SCHEME}` prefix at all (Dovecot's default scheme for passwd-files is CRYPT), are accepted
//!   when the data is such a `$6$` string.
//! * `{PLAIN}` / `{CLEAR}`: the password itself, optionally with Dovecot's encoding suffix
//!   (`{PLAIN.BASE64}`, `{PLAIN.B64}`, `{PLAIN.HEX}`).
//!
//! Scheme names are case-insensitive.

use std::fmt;
use std::hint::black_box;
use std::str::FromStr;

use argon2::password_hash::{self, Output, PasswordHash, PasswordHasher, Salt, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordVerifier, Version};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha_crypt::{ROUNDS_DEFAULT, ROUNDS_MAX, ROUNDS_MIN, Sha512Params};

use super::AuthError;

/// Longest password accepted, in bytes. SHA512-CRYPT costs grow with the square of the
/// password length, so longer candidates are refused before any hashing.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Length of the base64 hash part of a `$6$` string.
const SHA512_HASH_LEN: usize = 86;
/// Salt length (characters) for new `$6$` hashes; glibc uses at most 16.
const SHA512_SALT_LEN: usize = 16;
/// The crypt(3) base64 alphabet.
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A scheme new passwords can be hashed with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `{ARGON2ID}`: argon2id with the `argon2` crate defaults (m=19456 KiB, t=2, p=1).
    #[default]
    Argon2id,
    /// `{SHA512-CRYPT}`: glibc `$6$`, 5000 rounds.
    Sha512Crypt,
    /// `{PLAIN}`: stored as is (`{PLAIN.BASE64}` if the password contains `:`).
    Plain,
}

impl Scheme {
    /// The Dovecot name, as written between the braces.
    #[must_use]
    pub fn dovecot_name(self) -> &'static str {
        match self {
            Scheme::Argon2id => "ARGON2ID",
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::Plain => "PLAIN",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dovecot_name())
    }
}

impl FromStr for Scheme {
    type Err = AuthError;

    /// `argon2id`, `sha512-crypt`, `plain` (or its Dovecot alias `clear`), any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("argon2id") {
            Ok(Scheme::Argon2id)
        } else if s.eq_ignore_ascii_case("sha512-crypt") {
            Ok(Scheme::Sha512Crypt)
        } else if s.eq_ignore_ascii_case("plain") || s.eq_ignore_ascii_case("clear") {
            Ok(Scheme::Plain)
        } else {
            Err(AuthError::UnknownScheme(s.to_owned()))
        }
    }
}

/// Hashes `password` and returns the whole passwd-file field, e.g. `{ARGON2ID}$argon2id$v=19$...`.
///
/// Fails with [`AuthError::InvalidPassword`] for an empty password, one longer than
/// [`MAX_PASSWORD_LEN`] bytes, or one containing CR, LF or NUL (they cannot be stored in, or
/// sent over, a line-based format).
pub fn hash_password(scheme: Scheme, password: &str) -> Result<String, AuthError> {
    check_new_password(password)?;
    match scheme {
        Scheme::Argon2id => {
            let mut salt = [0u8; Salt::RECOMMENDED_LENGTH];
            random_bytes(&mut salt)?;
            let salt = SaltString::encode_b64(&salt)
                .map_err(|e| AuthError::Hash(format!("argon2 salt: {e}")))?;
            let hash = Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map_err(|e| AuthError::Hash(format!("argon2: {e}")))?;
            Ok(format!("{{ARGON2ID}}{hash}"))
        }
        Scheme::Sha512Crypt => {
            let mut raw = [0u8; SHA512_SALT_LEN];
            random_bytes(&mut raw)?;
            // 256 is a multiple of 64, so masking keeps the characters uniform.
            let salt: String = raw
                .iter()
                .map(|b| char::from(CRYPT_ALPHABET[usize::from(b & 63)]))
                .collect();
            let hash = sha_crypt::sha512_crypt_b64(
                password.as_bytes(),
                salt.as_bytes(),
                &Sha512Params::default(),
            )
            .map_err(|e| AuthError::Hash(format!("sha512-crypt: {e:?}")))?;
            Ok(format!("{{SHA512-CRYPT}}$6${salt}${hash}"))
        }
        Scheme::Plain => {
            if password.contains(':') {
                // A ':' would end the password field early.
                Ok(format!("{{PLAIN.BASE64}}{}", BASE64.encode(password)))
            } else {
                Ok(format!("{{PLAIN}}{password}"))
            }
        }
    }
}

/// Checks `password` against a stored passwd-file field (`{SCHEME}data`).
///
/// `Ok(false)` for a wrong password (and for candidates longer than [`MAX_PASSWORD_LEN`]);
/// `Err` only when the stored field uses an unknown scheme or cannot be parsed.
pub fn verify_password(stored_field: &str, password: &[u8]) -> Result<bool, AuthError> {
    Credential::parse(stored_field)?.verify(password)
}

/// The scheme name a field is written with, for listings: the text between the braces, `CRYPT`
/// for a non-empty field without braces (Dovecot's default), empty for an empty field.
pub(crate) fn scheme_label(field: &str) -> String {
    match split_field(field) {
        (Some(name), _) => name.to_owned(),
        (None, "") => String::new(),
        (None, _) => "CRYPT".to_owned(),
    }
}

fn check_new_password(password: &str) -> Result<(), AuthError> {
    let problem = if password.is_empty() {
        "the password is empty".to_owned()
    } else if password.len() > MAX_PASSWORD_LEN {
        format!("the password is longer than {MAX_PASSWORD_LEN} bytes")
    } else if password.contains(['\n', '\r', '\0']) {
        "the password contains a line break or NUL character".to_owned()
    } else {
        return Ok(());
    };
    Err(AuthError::InvalidPassword(problem))
}

fn random_bytes(buf: &mut [u8]) -> Result<(), AuthError> {
    getrandom::getrandom(buf).map_err(|e| AuthError::Hash(format!("random source: {e}")))
}

/// Splits `{SCHEME}data`; `(None, field)` when there is no `{...}` prefix.
fn split_field(field: &str) -> (Option<&str>, &str) {
    match field
        .strip_prefix('{')
        .and_then(|rest| rest.split_once('}'))
    {
        Some((scheme, data)) => (Some(scheme), data),
        None => (None, field),
    }
}

/// The broad kind of a credential; used to pick a dummy with the same cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Argon2,
    Sha512Crypt,
    Plain,
}

/// A parsed, validated stored password.
#[derive(Clone)]
pub(crate) enum Credential {
    /// A validated argon2i/argon2id PHC string.
    Argon2(String),
    /// A validated `$6$` string, split up.
    Sha512Crypt {
        rounds: usize,
        salt: String,
        hash: String,
    },
    /// The plain password bytes (after any `.BASE64`/`.HEX` decoding).
    Plain(Vec<u8>),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        match self {
            Credential::Argon2(_) => f.write_str("Credential::Argon2(..)"),
            Credential::Sha512Crypt { rounds, .. } => {
                write!(f, "Credential::Sha512Crypt {{ rounds: {rounds}, .. }}")
            }
            Credential::Plain(_) => f.write_str("Credential::Plain(..)"),
        }
    }
}

impl Credential {
    /// Parses and validates a whole passwd-file password field.
    pub(crate) fn parse(field: &str) -> Result<Self, AuthError> {
        let (scheme, data) = split_field(field);
        let scheme = match scheme {
            Some(s) => s,
            None if field.is_empty() => {
                return Err(AuthError::MalformedHash("empty password field".to_owned()));
            }
            None => "CRYPT",
        };
        let (base, encoding) = match scheme.rsplit_once('.') {
            Some((base, enc)) => (base, Some(enc)),
            None => (scheme, None),
        };
        let is = |name: &str| base.eq_ignore_ascii_case(name);

        if is("PLAIN") || is("CLEAR") {
            let bytes = match encoding {
                None => data.as_bytes().to_vec(),
                Some(e) if e.eq_ignore_ascii_case("BASE64") || e.eq_ignore_ascii_case("B64") => {
                    BASE64.decode(data).map_err(|_| {
                        AuthError::MalformedHash(format!("{{{scheme}}}: invalid base64"))
                    })?
                }
                Some(e) if e.eq_ignore_ascii_case("HEX") => hex_decode(data).ok_or_else(|| {
                    AuthError::MalformedHash(format!("{{{scheme}}}: invalid hex"))
                })?,
                Some(_) => return Err(AuthError::UnknownScheme(scheme.to_owned())),
            };
            return Ok(Credential::Plain(bytes));
        }
        if encoding.is_some() {
            return Err(AuthError::UnknownScheme(scheme.to_owned()));
        }
        if is("ARGON2ID") || is("ARGON2I") {
            parse_argon2(data)
        } else if is("SHA512-CRYPT") {
            parse_sha512_crypt(data)
        } else if is("CRYPT") {
            if data.starts_with("$6$") {
                parse_sha512_crypt(data)
            } else {
                // DES, MD5, SHA256, yescrypt... crypt(3) flavours we do not implement. (The
                // data is not quoted: without braces it might be a plain password.)
                Err(AuthError::UnknownScheme(format!(
                    "{scheme} (only $6$ SHA512-CRYPT strings are supported)"
                )))
            }
        } else {
            Err(AuthError::UnknownScheme(scheme.to_owned()))
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        match self {
            Credential::Argon2(_) => Kind::Argon2,
            Credential::Sha512Crypt { .. } => Kind::Sha512Crypt,
            Credential::Plain(_) => Kind::Plain,
        }
    }

    /// `Ok(true)` when `password` matches.
    pub(crate) fn verify(&self, password: &[u8]) -> Result<bool, AuthError> {
        if password.len() > MAX_PASSWORD_LEN {
            return Ok(false);
        }
        match self {
            Credential::Argon2(phc) => {
                let hash = PasswordHash::new(phc)
                    .map_err(|e| AuthError::MalformedHash(format!("argon2: {e}")))?;
                // The algorithm, version and parameters come from the stored hash.
                match Argon2::default().verify_password(password, &hash) {
                    Ok(()) => Ok(true),
                    Err(password_hash::Error::Password) => Ok(false),
                    Err(e) => Err(AuthError::MalformedHash(format!("argon2: {e}"))),
                }
            }
            Credential::Sha512Crypt { rounds, salt, hash } => {
                let params = Sha512Params::new(*rounds)
                    .map_err(|e| AuthError::MalformedHash(format!("sha512-crypt: {e:?}")))?;
                let computed = sha_crypt::sha512_crypt_b64(password, salt.as_bytes(), &params)
                    .map_err(|e| AuthError::Hash(format!("sha512-crypt: {e:?}")))?;
                Ok(ct_eq(computed.as_bytes(), hash.as_bytes()))
            }
            Credential::Plain(stored) => Ok(ct_eq(stored, password)),
        }
    }

    /// A credential nobody knows the password of, costing about as much to verify as
    /// `template` (same argon2 parameters, same crypt rounds, same plain length). Used for
    /// unknown users so that timing does not tell which user names exist.
    pub(crate) fn dummy_like(template: Option<&Credential>) -> Credential {
        match template {
            Some(Credential::Argon2(phc)) => {
                dummy_argon2(phc).unwrap_or_else(|| Credential::dummy_like(None))
            }
            Some(Credential::Sha512Crypt { rounds, .. }) => Credential::Sha512Crypt {
                rounds: *rounds,
                salt: "hatodummysalt000".to_owned(),
                hash: ".".repeat(SHA512_HASH_LEN),
            },
            Some(Credential::Plain(p)) => Credential::Plain(vec![0xff; p.len()]),
            None => default_dummy_argon2(),
        }
    }
}

const DUMMY_SALT_B64: &str = "aGF0b2R1bW15c2FsdA";

/// Same algorithm/version/parameters as `phc`, fixed salt, all-zero hash.
fn dummy_argon2(phc: &str) -> Option<Credential> {
    let template = PasswordHash::new(phc).ok()?;
    let len = template.hash?.len();
    let zeros = [0u8; Output::MAX_LENGTH];
    let dummy = PasswordHash {
        algorithm: template.algorithm,
        version: template.version,
        params: template.params.clone(),
        salt: Some(Salt::from_b64(DUMMY_SALT_B64).ok()?),
        hash: Some(Output::new(zeros.get(..len)?).ok()?),
    };
    Some(Credential::Argon2(dummy.to_string()))
}

/// An argon2id hash with the parameters [`hash_password`] uses.
fn default_dummy_argon2() -> Credential {
    let params = Params::default();
    let phc = format!(
        "$argon2id$v=19$m={},t={},p={}${DUMMY_SALT_B64}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        // 32 zero bytes in unpadded base64.
        "A".repeat(43)
    );
    Credential::Argon2(phc)
}

fn parse_argon2(data: &str) -> Result<Credential, AuthError> {
    let bad = |what: String| AuthError::MalformedHash(format!("argon2: {what}"));
    let hash = PasswordHash::new(data).map_err(|e| bad(e.to_string()))?;
    match Algorithm::try_from(hash.algorithm) {
        Ok(Algorithm::Argon2id | Algorithm::Argon2i) => {}
        _ => return Err(bad(format!("unsupported algorithm {}", hash.algorithm))),
    }
    if let Some(v) = hash.version {
        Version::try_from(v).map_err(|e| bad(e.to_string()))?;
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(bad("missing salt or hash".to_owned()));
    }
    Params::try_from(&hash).map_err(|e| bad(e.to_string()))?;
    Ok(Credential::Argon2(data.to_owned()))
}

/// Parses glibc's `$6$[rounds=N$]salt$hash`, with glibc's rounds clamping and salt truncation.
fn parse_sha512_crypt(data: &str) -> Result<Credential, AuthError> {
    let bad = |what: &str| AuthError::MalformedHash(format!("sha512-crypt: {what}"));
    let rest = data
        .strip_prefix("$6$")
        .ok_or_else(|| bad("does not start with $6$"))?;
    let (rounds, rest) = match rest.strip_prefix("rounds=") {
        Some(r) => {
            let (num, rest) = r.split_once('$').ok_or_else(|| bad("missing salt"))?;
            let n: u64 = num.parse().map_err(|_| bad("invalid rounds"))?;
            let n = usize::try_from(n).unwrap_or(ROUNDS_MAX);
            (n.clamp(ROUNDS_MIN, ROUNDS_MAX), rest)
        }
        None => (ROUNDS_DEFAULT, rest),
    };
    let (salt, hash) = rest.split_once('$').ok_or_else(|| bad("missing hash"))?;
    if hash.len() != SHA512_HASH_LEN || !hash.bytes().all(|b| CRYPT_ALPHABET.contains(&b)) {
        return Err(bad("hash is not 86 crypt-base64 characters"));
    }
    // glibc uses at most 16 salt characters.
    let salt: String = salt.chars().take(SHA512_SALT_LEN).collect();
    Ok(Credential::Sha512Crypt {
        rounds,
        salt,
        hash: hash.to_owned(),
    })
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Compares every byte of both inputs (no early exit), so the time taken depends only on the
/// longer length, not on where the first difference is.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= black_box(x ^ y);
    }
    black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `openssl passwd -6 -salt abc secret`
    const OPENSSL_SHA512: &str = "$6$abc$IdWKNKTJEb8LxY7CGg8YBXlvtfZzFw7Mp/r6niK9YB2mdvgY..TKjv1T..8RadRt2qvUHYRLr/TsVArtr91iR1";
    /// Python `crypt.crypt("secret", "$6$rounds=10000$saltsaltsaltsalt")` (glibc).
    const GLIBC_SHA512_ROUNDS: &str = "$6$rounds=10000$saltsaltsaltsalt$JfKXl4x07umbXIGXrz4jYnDtZt8fIFlNSby2poRKPSFD4PbiQHTxb2NLQPGuaML.ZXPWXKfgxibKFGp.yXoha.";
    /// Python `crypt.crypt("pässwörd:x", "$6$Zq9mXk2LpR7vTnWc")` (glibc, UTF-8 password).
    const GLIBC_SHA512_UTF8: &str = "$6$Zq9mXk2LpR7vTnWc$bLwiYaDtaicQKW42WaKhcWyEPKW7Kx7xVWin4Xo/V27RRk2UNNS7QhCMYD4ju4ywo9Iwk9XF6VJTyUpnNB2Xl.";
    /// argon2-cffi 25.1.0: `PasswordHasher(time_cost=3, memory_cost=8192, parallelism=1).hash("secret")`
    const CFFI_ARGON2ID: &str = "$argon2id$v=19$m=8192,t=3,p=1$1LO3AlDWfG+9GQaeCBZWJQ$M2iQvvx5a7TZVH6sdYuE5Ry1sFksWo3MuRuIwEU3Abs";
    /// argon2-cffi 25.1.0: `PasswordHasher(time_cost=2, memory_cost=1024, parallelism=2).hash("correct horse")`
    const CFFI_ARGON2ID_P2: &str = "$argon2id$v=19$m=1024,t=2,p=2$x9UhBe7j1eyngOJrqW+uMA$IxGx4ag0gbjpNPXZnl4DSkctvhCrKx42q0lVQH7ulKo";
    /// argon2-cffi 25.1.0: argon2i, `time_cost=2, memory_cost=1024, parallelism=1`, "secret"
    const CFFI_ARGON2I: &str = "$argon2i$v=19$m=1024,t=2,p=1$/AM2T80mup2QjdGPXXKlIw$VgD4S0uxzyxzraUyNC+SOO7xJe1NBV+XiFYj8TmeJZ4";

    #[test]
    fn scheme_from_str_and_display() {
        for (text, scheme) in [
            ("argon2id", Scheme::Argon2id),
            ("ARGON2ID", Scheme::Argon2id),
            ("Sha512-Crypt", Scheme::Sha512Crypt),
            ("plain", Scheme::Plain),
            ("CLEAR", Scheme::Plain),
        ] {
            assert_eq!(text.parse::<Scheme>().ok(), Some(scheme), "{text}");
        }
        for scheme in [Scheme::Argon2id, Scheme::Sha512Crypt, Scheme::Plain] {
            assert_eq!(scheme.to_string().parse::<Scheme>().ok(), Some(scheme));
        }
        assert_eq!(Scheme::Sha512Crypt.to_string(), "SHA512-CRYPT");
        assert_eq!(Scheme::default(), Scheme::Argon2id);
        assert!(matches!(
            "md5".parse::<Scheme>(),
            Err(AuthError::UnknownScheme(s)) if s == "md5"
        ));
    }

    #[test]
    fn argon2id_round_trip() {
        let field = hash_password(Scheme::Argon2id, "hunter2").expect("hash");
        assert!(
            field.starts_with("{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$"),
            "{field}"
        );
        assert!(verify_password(&field, b"hunter2").expect("verify"));
        assert!(!verify_password(&field, b"hunter3").expect("verify"));
        // Salted: the same password hashes differently.
        let again = hash_password(Scheme::Argon2id, "hunter2").expect("hash");
        assert_ne!(field, again);
    }

    #[test]
    fn sha512_crypt_round_trip() {
        let field = hash_password(Scheme::Sha512Crypt, "hunter2").expect("hash");
        let crypt = field.strip_prefix("{SHA512-CRYPT}$6$").expect("prefix");
        let (salt, hash) = crypt.split_once('$').expect("salt$hash");
        assert_eq!(salt.len(), 16);
        assert_eq!(hash.len(), 86);
        assert!(verify_password(&field, b"hunter2").expect("verify"));
        assert!(!verify_password(&field, b"hunter3").expect("verify"));
        assert!(!verify_password(&field, b"").expect("verify"));
        assert_ne!(
            field,
            hash_password(Scheme::Sha512Crypt, "hunter2").expect("hash")
        );
        // Independently checkable by the sha-crypt crate's own parser.
        assert!(sha_crypt::sha512_check("hunter2", &field["{SHA512-CRYPT}".len()..]).is_ok());
    }

    #[test]
    fn plain_round_trip() {
        let field = hash_password(Scheme::Plain, "hunter2").expect("hash");
        assert_eq!(field, "{PLAIN}hunter2");
        assert!(verify_password(&field, b"hunter2").expect("verify"));
        assert!(!verify_password(&field, b"hunter").expect("verify"));
        assert!(!verify_password(&field, b"hunter22").expect("verify"));
        assert!(!verify_password(&field, b"Hunter2").expect("verify"));
    }

    #[test]
    fn plain_with_colon_is_base64_encoded() {
        let field = hash_password(Scheme::Plain, "a:b:c").expect("hash");
        assert_eq!(field, "{PLAIN.BASE64}YTpiOmM=");
        assert!(!field.contains(':'));
        assert!(verify_password(&field, b"a:b:c").expect("verify"));
        assert!(!verify_password(&field, b"a").expect("verify"));
    }

    #[test]
    fn sha512_crypt_known_vectors() {
        for (field, password) in [
            (format!("{{SHA512-CRYPT}}{OPENSSL_SHA512}"), "secret"),
            (format!("{{SHA512-CRYPT}}{GLIBC_SHA512_ROUNDS}"), "secret"),
            (format!("{{SHA512-CRYPT}}{GLIBC_SHA512_UTF8}"), "pässwörd:x"),
            // Scheme names are case-insensitive; CRYPT and no prefix mean crypt(3).
            (format!("{{sha512-crypt}}{OPENSSL_SHA512}"), "secret"),
            (format!("{{CRYPT}}{OPENSSL_SHA512}"), "secret"),
            (OPENSSL_SHA512.to_owned(), "secret"),
        ] {
            assert!(
                verify_password(&field, password.as_bytes()).expect("verify"),
                "{field}"
            );
            assert!(
                !verify_password(&field, b"Secret").expect("verify"),
                "{field}"
            );
        }
    }

    #[test]
    fn argon2_known_vectors() {
        for (field, password) in [
            (format!("{{ARGON2ID}}{CFFI_ARGON2ID}"), "secret"),
            (format!("{{argon2id}}{CFFI_ARGON2ID_P2}"), "correct horse"),
            (format!("{{ARGON2I}}{CFFI_ARGON2I}"), "secret"),
        ] {
            assert!(
                verify_password(&field, password.as_bytes()).expect("verify"),
                "{field}"
            );
            assert!(
                !verify_password(&field, b"wrong").expect("verify"),
                "{field}"
            );
        }
    }

    #[test]
    fn plain_encodings_and_aliases() {
        for field in [
            "{PLAIN}secret",
            "{plain}secret",
            "{CLEAR}secret",
            "{Clear}secret",
            "{PLAIN.BASE64}c2VjcmV0",
            "{plain.b64}c2VjcmV0",
            "{PLAIN.HEX}736563726574",
            "{CLEAR.hex}736563726574",
        ] {
            assert!(
                verify_password(field, b"secret").expect("verify"),
                "{field}"
            );
            assert!(
                !verify_password(field, b"secreT").expect("verify"),
                "{field}"
            );
        }
        // Non-UTF-8 candidates are fine.
        assert!(verify_password("{PLAIN.HEX}ff00", b"\xff\x00").expect("verify"));
    }

    #[test]
    fn unknown_schemes_are_errors() {
        for (field, name) in [
            ("{MD5-CRYPT}$1$abc$def", "MD5-CRYPT"),
            ("{SSHA}xyz", "SSHA"),
            ("{ARGON2ID.HEX}00", "ARGON2ID.HEX"),
            ("{PLAIN.ROT13}frperg", "PLAIN.ROT13"),
            ("{}secret", ""),
        ] {
            match verify_password(field, b"secret") {
                Err(AuthError::UnknownScheme(s)) => assert_eq!(s, name, "{field}"),
                other => panic!("{field}: expected UnknownScheme, got {other:?}"),
            }
        }
        assert!(matches!(
            verify_password("{CRYPT}$1$abc$def", b"x"),
            Err(AuthError::UnknownScheme(_))
        ));
        assert!(matches!(
            verify_password("plaintext-without-scheme", b"x"),
            Err(AuthError::UnknownScheme(_))
        ));
    }

    #[test]
    fn malformed_hashes_are_errors() {
        for field in [
            "{ARGON2ID}garbage",
            "{ARGON2ID}$argon2id$v=19$m=8192,t=3,p=1$1LO3AlDWfG+9GQaeCBZWJQ",
            "{ARGON2ID}$argon2d$v=19$m=8192,t=3,p=1$1LO3AlDWfG+9GQaeCBZWJQ$M2iQvvx5a7TZVH6sdYuE5Ry1sFksWo3MuRuIwEU3Abs",
            "{ARGON2ID}$argon2id$v=19$m=8192,t=0,p=1$1LO3AlDWfG+9GQaeCBZWJQ$M2iQvvx5a7TZVH6sdYuE5Ry1sFksWo3MuRuIwEU3Abs",
            "{ARGON2ID}$argon2id$v=7$m=8192,t=3,p=1$1LO3AlDWfG+9GQaeCBZWJQ$M2iQvvx5a7TZVH6sdYuE5Ry1sFksWo3MuRuIwEU3Abs",
            "{SHA512-CRYPT}$5$abc$def",
            "{SHA512-CRYPT}$6$abc$tooshort",
            "{SHA512-CRYPT}$6$abc",
            "{SHA512-CRYPT}$6$rounds=x$abc$IdWKNKTJEb8LxY7CGg8YBXlvtfZzFw7Mp/r6niK9YB2mdvgY..TKjv1T..8RadRt2qvUHYRLr/TsVArtr91iR1",
            "{PLAIN.BASE64}!!!",
            "{PLAIN.HEX}abc",
            "",
        ] {
            assert!(
                matches!(
                    verify_password(field, b"secret"),
                    Err(AuthError::MalformedHash(_))
                ),
                "{field}: {:?}",
                verify_password(field, b"secret")
            );
        }
    }

    #[test]
    fn sha512_rounds_are_clamped_like_glibc() {
        // glibc treats rounds=10 as rounds=1000.
        let salt = "saltsalt";
        let params = Sha512Params::new(ROUNDS_MIN).expect("params");
        let hash = sha_crypt::sha512_crypt_b64(b"pw", salt.as_bytes(), &params).expect("crypt");
        let field = format!("{{SHA512-CRYPT}}$6$rounds=10${salt}${hash}");
        assert!(verify_password(&field, b"pw").expect("verify"));
    }

    #[test]
    fn bad_new_passwords_rejected() {
        let long = "x".repeat(MAX_PASSWORD_LEN + 1);
        for pw in ["", "a\nb", "a\rb", "a\0b", long.as_str()] {
            for scheme in [Scheme::Argon2id, Scheme::Sha512Crypt, Scheme::Plain] {
                assert!(
                    matches!(
                        hash_password(scheme, pw),
                        Err(AuthError::InvalidPassword(_))
                    ),
                    "{pw:?} {scheme}"
                );
            }
        }
        let max = "x".repeat(MAX_PASSWORD_LEN);
        let field = hash_password(Scheme::Plain, &max).expect("max length is fine");
        assert!(verify_password(&field, max.as_bytes()).expect("verify"));
        // Over-long candidates are refused without hashing.
        assert!(!verify_password(&field, long.as_bytes()).expect("verify"));
    }

    #[test]
    fn scheme_labels() {
        assert_eq!(scheme_label("{ARGON2ID}$argon2id$..."), "ARGON2ID");
        assert_eq!(scheme_label("{plain}x"), "plain");
        assert_eq!(scheme_label("$6$abc$def"), "CRYPT");
        assert_eq!(scheme_label(""), "");
    }

    #[test]
    fn dummies_match_template_cost_and_never_verify() {
        let argon = Credential::parse(&format!("{{ARGON2ID}}{CFFI_ARGON2ID_P2}")).expect("parse");
        let Credential::Argon2(dummy) = Credential::dummy_like(Some(&argon)) else {
            panic!("argon2 template should give an argon2 dummy");
        };
        assert!(
            dummy.starts_with("$argon2id$v=19$m=1024,t=2,p=2$"),
            "{dummy}"
        );
        assert!(
            !Credential::Argon2(dummy.clone())
                .verify(b"correct horse")
                .expect("verify")
        );
        assert!(parse_argon2(&dummy).is_ok());

        let Credential::Argon2(default) = Credential::dummy_like(None) else {
            panic!("default dummy is argon2");
        };
        assert!(parse_argon2(&default).is_ok(), "{default}");
        assert!(
            default.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{default}"
        );

        let sha =
            Credential::parse(&format!("{{SHA512-CRYPT}}{GLIBC_SHA512_ROUNDS}")).expect("parse");
        let dummy = Credential::dummy_like(Some(&sha));
        assert!(
            matches!(dummy, Credential::Sha512Crypt { rounds: 10000, .. }),
            "{dummy:?}"
        );
        assert!(!dummy.verify(b"secret").expect("verify"));

        let plain = Credential::parse("{PLAIN}secret").expect("parse");
        let dummy = Credential::dummy_like(Some(&plain));
        assert!(matches!(&dummy, Credential::Plain(p) if p.len() == 6));
        assert!(!dummy.verify(b"secret").expect("verify"));
        assert_eq!(format!("{dummy:?}"), "Credential::Plain(..)");
    }

    #[test]
    fn ct_eq_basics() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"ab", b"abc"));
        assert!(!ct_eq(b"ab\0", b"ab"));
        assert!(!ct_eq(b"", b"\0"));
    }

    proptest! {
        #[test]
        fn ct_eq_agrees_with_eq(a in proptest::collection::vec(any::<u8>(), 0..24),
                                b in proptest::collection::vec(any::<u8>(), 0..24)) {
            prop_assert_eq!(ct_eq(&a, &b), a == b);
            prop_assert!(ct_eq(&a, &a));
        }

        #[test]
        fn plain_round_trips_any_storable_password(pw in "[^\r\n\u{0}]{1,40}") {
            let field = hash_password(Scheme::Plain, &pw).expect("hash");
            prop_assert!(!field.contains(':'));
            prop_assert!(!field.contains('\n'));
            prop_assert!(verify_password(&field, pw.as_bytes()).expect("verify"));
            let mut other = pw.clone().into_bytes();
            other.push(b'x');
            prop_assert!(!verify_password(&field, &other).expect("verify"));
        }

        #[test]
        fn parsing_arbitrary_fields_never_panics(field in "\\PC{0,80}", pw in "\\PC{0,10}") {
            let _ = Credential::parse(&field);
            if let Ok(Credential::Plain(_)) = Credential::parse(&field) {
                let _ = verify_password(&field, pw.as_bytes());
            }
        }
    }
}

//! JWT-SVIDs and JWT bundles minted by an implementation independent of zt:
//! `python/jwt_mint.py` (PyJWT and cryptography), run at test time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TempDir;

/// What `jwt_mint.py` made: the bundle files of `example.org` and `partner.org`
/// (SPIFFE bundle documents with `jwt-svid` keys) and tokens by name; see the
/// script for what each token is.
#[derive(Debug)]
pub struct MintedJwts {
    /// Where the bundle files are; removed on drop.
    pub dir: TempDir,
    /// The bundle file of each trust domain.
    pub bundles: BTreeMap<String, PathBuf>,
    /// The tokens, by name.
    pub tokens: BTreeMap<String, String>,
}

impl MintedJwts {
    /// Mints keys, bundles and tokens for `audience`.
    ///
    /// # Panics
    ///
    /// When Python 3 with PyJWT and cryptography is not installed (`scripts/test`
    /// installs them), or the script fails.
    pub fn mint(audience: &str) -> Self {
        let dir = TempDir::new("jwt-mint");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/jwt_mint.py");
        let output = Command::new("python3")
            .arg(&script)
            .arg(dir.path())
            .arg(audience)
            .output()
            .expect("python3 runs (scripts/test installs PyJWT and cryptography)");
        assert!(
            output.status.success(),
            "jwt_mint.py failed (pip install pyjwt cryptography): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let minted: Output =
            serde_json::from_slice(&output.stdout).expect("jwt_mint.py prints its JSON");
        Self {
            dir,
            bundles: minted.bundles,
            tokens: minted.tokens,
        }
    }

    /// The token called `name`.
    ///
    /// # Panics
    ///
    /// When the script made no such token.
    pub fn token(&self, name: &str) -> &str {
        self.tokens
            .get(name)
            .unwrap_or_else(|| panic!("jwt_mint.py makes no token {name:?}"))
    }

    /// The bundle file of `trust_domain`.
    ///
    /// # Panics
    ///
    /// When the script made no bundle for it.
    pub fn bundle(&self, trust_domain: &str) -> &Path {
        self.bundles
            .get(trust_domain)
            .unwrap_or_else(|| panic!("jwt_mint.py makes no bundle for {trust_domain:?}"))
    }
}

#[derive(serde::Deserialize)]
struct Output {
    bundles: BTreeMap<String, PathBuf>,
    tokens: BTreeMap<String, String>,
}

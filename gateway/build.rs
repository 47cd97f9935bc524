//! Fetches the browser assets of GraphiQL and of the web app (the graphql-ws client, uPlot for
//! the charts) from the npm registry at build time, so the gateway serves them itself and both
//! work with no internet (and no CDN) where it runs.
//!
//! Each package is pinned to a version and to the SHA-512 the registry publishes for it; a
//! tarball that does not match stops the build. `npm pack` does the download (npm's cache
//! makes later builds offline). The files land in `OUT_DIR/graphiql/` and are embedded with
//! `include_bytes!`.
//!
//! Where npm cannot be reached, set `ATES_GRAPHIQL_ASSETS` to a folder already holding the
//! seven files. Without either, the build goes on with a warning, and `/graphql` and `/` in a
//! browser say that GraphiQL and the web app were left out; the API is unaffected.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use sha2::{Digest as _, Sha512};

/// (package, version, integrity, file in the package, file served).
const ASSETS: [(&str, &str, &str, &str, &str); 7] = [
    (
        "graphiql",
        "3.9.0",
        "rJYFlHdBbug9+YbFSwRVvgfPjCayC7wHecZkx/qB4XLuQPFQZw/yB9pmHFtOJV6RiNBBHro3u1GdocKa3YcGRA==",
        "package/graphiql.min.js",
        "graphiql.min.js",
    ),
    (
        "graphiql",
        "3.9.0",
        "rJYFlHdBbug9+YbFSwRVvgfPjCayC7wHecZkx/qB4XLuQPFQZw/yB9pmHFtOJV6RiNBBHro3u1GdocKa3YcGRA==",
        "package/graphiql.min.css",
        "graphiql.min.css",
    ),
    (
        "react",
        "18.3.1",
        "wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ==",
        "package/umd/react.production.min.js",
        "react.production.min.js",
    ),
    (
        "react-dom",
        "18.3.1",
        "5m4nQKp+rZRb09LNH59GM4BxTh9251/ylbKIbpe7TpGxfJ+9kv6BLkLBXIjjspbgbnIBNqlI23tRnTWT0snUIw==",
        "package/umd/react-dom.production.min.js",
        "react-dom.production.min.js",
    ),
    (
        "graphql-ws",
        "5.16.2",
        "E1uccsZxt/96jH/OwmLPuXMACILs76pKF2i3W861LpKBCYtGIyPQGtWLuBLkND4ox1KHns70e83PS4te50nvPQ==",
        "package/umd/graphql-ws.min.js",
        "graphql-ws.min.js",
    ),
    (
        "uplot",
        "1.6.32",
        "KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
        "package/dist/uPlot.iife.min.js",
        "uPlot.iife.min.js",
    ),
    (
        "uplot",
        "1.6.32",
        "KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
        "package/dist/uPlot.min.css",
        "uPlot.min.css",
    ),
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=ATES_GRAPHIQL_ASSETS");
    println!("cargo::rustc-check-cfg=cfg(graphiql_missing)");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let assets = out.join("graphiql");
    std::fs::create_dir_all(&assets).expect("OUT_DIR is writable");
    let result = match std::env::var_os("ATES_GRAPHIQL_ASSETS") {
        Some(dir) => copy_from(Path::new(&dir), &assets),
        None => fetch(&out, &assets),
    };
    if let Err(reason) = result {
        println!("cargo::warning=GraphiQL is left out of this build: {reason}");
        println!("cargo::rustc-cfg=graphiql_missing");
        for (.., served) in ASSETS {
            std::fs::write(assets.join(served), b"").expect("OUT_DIR is writable");
        }
    }
}

fn copy_from(dir: &Path, assets: &Path) -> Result<(), String> {
    for (.., served) in ASSETS {
        std::fs::copy(dir.join(served), assets.join(served))
            .map_err(|e| format!("ATES_GRAPHIQL_ASSETS has no {served}: {e}"))?;
    }
    Ok(())
}

fn fetch(out: &Path, assets: &Path) -> Result<(), String> {
    let downloads = out.join("npm-packs");
    std::fs::create_dir_all(&downloads).map_err(|e| e.to_string())?;
    for (package, version, integrity, inner, served) in ASSETS {
        let target = assets.join(served);
        if std::fs::metadata(&target).is_ok_and(|m| m.len() > 0) {
            continue;
        }
        let tarball = downloads.join(format!("{package}-{version}.tgz"));
        if !tarball.exists() {
            let status = Command::new("npm")
                .args(["pack", "--silent", &format!("{package}@{version}")])
                .current_dir(&downloads)
                .status()
                .map_err(|e| format!("npm could not be run ({e})"))?;
            if !status.success() || !tarball.exists() {
                return Err(format!("npm pack {package}@{version} failed"));
            }
        }
        let bytes = std::fs::read(&tarball).map_err(|e| e.to_string())?;
        let digest = base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&bytes));
        if digest != integrity {
            let _ = std::fs::remove_file(&tarball);
            return Err(format!(
                "{package}@{version} does not match its pinned SHA-512 (got {digest})"
            ));
        }
        let unpacked = downloads.join(package);
        std::fs::create_dir_all(&unpacked).map_err(|e| e.to_string())?;
        let status = Command::new("tar")
            .arg("xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&unpacked)
            .arg(inner)
            .status()
            .map_err(|e| format!("tar could not be run ({e})"))?;
        if !status.success() {
            return Err(format!("{inner} is not in {package}@{version}"));
        }
        std::fs::copy(unpacked.join(inner), &target).map_err(|e| e.to_string())?;
    }
    Ok(())
}

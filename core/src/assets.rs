//! The files the hub serves besides its API: the browser client (`GET /client.js`, from
//! `clients/js/livebridge.js`) and the admin page (`GET /`, from `core/assets/`). They are
//! compiled into the engine so that every runtime serves the same bytes, with no file system
//! access and no request to another site.

use crate::output::{ContentType, Reply};
use serde::{Deserialize, Serialize};

/// A file compiled into the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Asset {
    /// `GET /`: the admin page.
    AdminPage,
    /// `GET /admin.js`: the admin page's script.
    AdminScript,
    /// `GET /admin.css`: the admin page's styles.
    AdminStyles,
    /// `GET /client.js`: the browser client, an ES module.
    BrowserClient,
}

impl Asset {
    /// The asset served at `path`, if any.
    pub(crate) fn at(path: &str) -> Option<Asset> {
        match path {
            "/" | "/admin" => Some(Asset::AdminPage),
            "/admin.js" => Some(Asset::AdminScript),
            "/admin.css" => Some(Asset::AdminStyles),
            "/client.js" => Some(Asset::BrowserClient),
            _ => None,
        }
    }

    /// The reply that serves it.
    pub(crate) fn reply(self) -> Reply {
        let (content_type, body) = match self {
            Asset::AdminPage => (ContentType::Html, include_str!("../assets/admin.html")),
            Asset::AdminScript => (ContentType::JavaScript, include_str!("../assets/admin.js")),
            Asset::AdminStyles => (ContentType::Css, include_str!("../assets/admin.css")),
            Asset::BrowserClient => (
                ContentType::JavaScript,
                include_str!("../../clients/js/livebridge.js"),
            ),
        };
        let mut headers = vec![
            // The files change only with the binary: revalidate after a short while.
            (
                "Cache-Control".to_string(),
                "public, max-age=300".to_string(),
            ),
            ("X-Content-Type-Options".to_string(), "nosniff".to_string()),
        ];
        if self == Asset::AdminPage {
            // Scripts and connections to this hub only; never framed by another page.
            headers.push((
                "Content-Security-Policy".to_string(),
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
                 base-uri 'none'; form-action 'none'"
                    .to_string(),
            ));
            headers.push(("X-Frame-Options".to_string(), "DENY".to_string()));
        }
        Reply {
            status: 200,
            content_type,
            headers,
            body: body.to_string(),
        }
    }
}

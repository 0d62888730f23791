//! The web console's colour themes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A colour theme of the console: the site's default (`DEFAULT_THEME`) or
/// a user's own choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Theme {
    Light,
    Dark,
    /// Black on white with strong outlines and underlined links, for
    /// low vision and bright rooms.
    HighContrast,
}

impl Theme {
    pub const ALL: [Theme; 3] = [Theme::Light, Theme::Dark, Theme::HighContrast];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Light => "light",
            Self::Dark => "dark",
            Self::HighContrast => "high-contrast",
        }
    }

    /// How the theme is named to a person.
    pub fn label(self) -> &'static str {
        match self {
            Self::Light => "Light",
            Self::Dark => "Dark",
            Self::HighContrast => "High contrast",
        }
    }
}

impl fmt::Display for Theme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Theme {
    type Err = String;

    /// Case does not matter; the older system's `default` means light.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "light" | "default" => Ok(Self::Light),
            "dark" => Ok(Self::Dark),
            "high-contrast" | "high_contrast" | "contrast" => Ok(Self::HighContrast),
            other => Err(format!(
                "unknown theme {other:?} (expected light, dark or high-contrast)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn themes_read_back_what_they_write() {
        for theme in Theme::ALL {
            assert_eq!(theme.as_str().parse::<Theme>(), Ok(theme));
        }
        assert_eq!("DARK".parse::<Theme>(), Ok(Theme::Dark));
        assert_eq!("default".parse::<Theme>(), Ok(Theme::Light));
        assert!(
            "solarized"
                .parse::<Theme>()
                .unwrap_err()
                .contains("high-contrast")
        );
    }
}

//! HTML: the pages drawn from their view models, with SVG charts drawn here, an embedded
//! stylesheet and a small optional script. Nothing is fetched from anywhere else.

pub mod chart;
pub mod html;
pub mod pages;

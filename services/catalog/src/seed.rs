//! The demo catalog loaded into an empty catalog database: the eight categories
//! and thirty products in each, generated from word lists.
//!
//! Generation uses its own small PRNG (splitmix64) with fixed seeds instead of
//! `rand`, whose algorithms may change between versions: the catalog must be the
//! same on every machine and every build, because other services and tests refer
//! to seeded products by SKU and by their UUIDv5 ids. Each category draws from
//! its own seed, so editing one category's lists leaves the others unchanged.

use serde_json::{Map, Value};

use crate::domain::{Category, CategorySlug, MoneyInput, ProductDraft, ProductInput};

/// How many products each seeded category holds.
pub const PRODUCTS_PER_CATEGORY: usize = 30;

/// The base seed of the generator; category `i` uses `SEED + i`.
const SEED: u64 = 0xBA2A_A2CA_7A10_6001;

/// The seeded categories and their products, identical on every call.
///
/// Products come in category order, SKUs numbered from `<PREFIX>-0001` within
/// each category (e.g. `ELE-0001`, `BOO-0001`), prices in USD. Their ids are
/// [`crate::domain::product_id_for`] of the SKU.
pub fn demo_catalog() -> (Vec<Category>, Vec<ProductDraft>) {
    let categories = SPECS
        .iter()
        .filter_map(|spec| Some(Category { slug: CategorySlug::parse(spec.slug).ok()?, name: spec.name.to_owned() }))
        .collect();
    // Generated bodies go through the same validation as a client's; the tests
    // prove none is dropped here.
    let products = raw_products().into_iter().filter_map(|input| ProductDraft::validate(input).ok()).collect();
    (categories, products)
}

/// Every seeded product as the raw body a client would send.
fn raw_products() -> Vec<ProductInput> {
    let mut products = Vec::with_capacity(SPECS.len() * PRODUCTS_PER_CATEGORY);
    for (index, spec) in (0_u64..).zip(SPECS.iter()) {
        let mut rng = SplitMix64(SEED.wrapping_add(index));
        let mut names: Vec<String> = Vec::with_capacity(PRODUCTS_PER_CATEGORY);
        for n in 1..=PRODUCTS_PER_CATEGORY {
            let sku = format!("{}-{n:04}", spec.prefix);
            let mut item = spec.kind.generate(&mut rng);
            // Draw again when a name repeats; the lists are long enough that a
            // few draws always find a new one, and the bound keeps it finite.
            for _ in 0..100 {
                if !names.contains(&item.name) {
                    break;
                }
                item = spec.kind.generate(&mut rng);
            }
            names.push(item.name.clone());
            products.push(ProductInput {
                id: None,
                version: None,
                image_url: Some(format!("https://img.bazaar.example/products/{sku}.jpg")),
                sku: Some(sku),
                name: Some(item.name),
                description: Some(item.description),
                price: Some(MoneyInput { amount: Some(item.price_cents), currency: Some("USD".to_owned()) }),
                category: Some(spec.slug.to_owned()),
                attributes: Some(Value::Object(item.attributes)),
            });
        }
    }
    products
}

/// splitmix64 (Steele, Lea and Flood): tiny, fast and fully specified, so its
/// output never changes.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0). The modulo bias is far too small
    /// to matter for demo data.
    fn below(&mut self, n: usize) -> usize {
        let n = n.max(1) as u64;
        usize::try_from(self.next_u64() % n).unwrap_or(0)
    }

    /// A number in `lo..=hi`.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        let span = usize::try_from(hi.saturating_sub(lo)).unwrap_or(0).saturating_add(1);
        lo.saturating_add(i64::try_from(self.below(span)).unwrap_or(0))
    }

    /// One element of a non-empty list.
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.get(self.below(items.len())).copied().unwrap_or_default()
    }

    /// Two different elements of a list of at least two.
    fn pick_two<'a>(&mut self, items: &[&'a str]) -> (&'a str, &'a str) {
        let len = items.len().max(2);
        let first = self.below(len);
        let second = (first + 1 + self.below(len - 1)) % len;
        let get = |i: usize| items.get(i).copied().unwrap_or_default();
        (get(first), get(second))
    }
}

/// One generated product before it gets its SKU.
struct Item {
    name: String,
    description: String,
    price_cents: i64,
    attributes: Map<String, Value>,
}

/// A seeded category: its identity and how its products are made.
struct CategorySpec {
    slug: &'static str,
    name: &'static str,
    prefix: &'static str,
    kind: Generator,
}

/// How a category's products are made.
enum Generator {
    /// Branded goods: brand, line and product kind, with materials and colours.
    Goods(&'static Goods),
    /// Books: title, author, genre, format and publisher.
    Books,
}

impl Generator {
    fn generate(&self, rng: &mut SplitMix64) -> Item {
        match self {
            Generator::Goods(goods) => goods.generate(rng),
            Generator::Books => book(rng),
        }
    }
}

/// The word lists of one category of branded goods.
struct Goods {
    brands: &'static [&'static str],
    /// Product lines or styles that qualify a name ("Pro", "Nordic", "Dinosaur").
    lines: &'static [&'static str],
    /// Whether the line follows the kind ("Earbuds Pro") or precedes it ("Nordic Lamp").
    line_after_kind: bool,
    /// Colours used when a kind does not list its own.
    colors: &'static [&'static str],
    kinds: &'static [Kind],
    /// Second sentences of descriptions; `{brand}` and `{line}` are filled in.
    closers: &'static [&'static str],
    /// Attributes every product of the category carries.
    attributes: &'static [(&'static str, Attr)],
}

/// One kind of product within a category.
struct Kind {
    /// The kind as it appears in a name: "Wireless Earbuds".
    name: &'static str,
    /// The kind as it reads inside a sentence: "wireless earbuds".
    noun: &'static str,
    materials: &'static [&'static str],
    /// Own colours, or empty to use the category's.
    colors: &'static [&'static str],
    /// Price range in whole dollars.
    dollars: (i64, i64),
    /// Weight range in grams.
    weight_g: (i64, i64),
    /// Selling points, two of which go into the description.
    features: &'static [&'static str],
    /// Attributes specific to this kind.
    attributes: &'static [(&'static str, Attr)],
}

/// How to produce one attribute value.
enum Attr {
    Text(&'static str),
    Int(i64),
    Bool(bool),
    IntRange(i64, i64),
    OneOf(&'static [&'static str]),
    IntOneOf(&'static [i64]),
}

impl Attr {
    fn value(&self, rng: &mut SplitMix64) -> Value {
        match self {
            Attr::Text(s) => Value::from(*s),
            Attr::Int(n) => Value::from(*n),
            Attr::Bool(b) => Value::from(*b),
            Attr::IntRange(lo, hi) => Value::from(rng.between(*lo, *hi)),
            Attr::OneOf(items) => Value::from(rng.pick(items)),
            Attr::IntOneOf(items) => Value::from(items.get(rng.below(items.len())).copied().unwrap_or(0)),
        }
    }
}

impl Goods {
    fn generate(&self, rng: &mut SplitMix64) -> Item {
        let brand = rng.pick(self.brands);
        let line = rng.pick(self.lines);
        let kind = &self.kinds[rng.below(self.kinds.len())];
        let material = rng.pick(kind.materials);
        let color = rng.pick(if kind.colors.is_empty() { self.colors } else { kind.colors });
        let (first, second) = rng.pick_two(kind.features);
        let closer = rng.pick(self.closers).replace("{brand}", brand).replace("{line}", line);

        let name = if self.line_after_kind {
            format!("{brand} {} {line}", kind.name)
        } else {
            format!("{brand} {line} {}", kind.name)
        };
        let description = format!("{brand} {} in {color} {material} with {first} and {second}. {closer}", kind.noun);

        let mut attributes = Map::new();
        attributes.insert("brand".into(), brand.into());
        attributes.insert("color".into(), color.into());
        attributes.insert("material".into(), material.into());
        attributes.insert("weight_g".into(), round_to(rng.between(kind.weight_g.0, kind.weight_g.1), 10).into());
        for (key, attr) in self.attributes.iter().chain(kind.attributes) {
            attributes.insert((*key).into(), attr.value(rng));
        }
        let price_cents = price(rng, kind.dollars);
        Item { name, description, price_cents, attributes }
    }
}

/// A shop-like price in cents within a range of whole dollars: x.99 mostly,
/// sometimes x.49, x.95 or a round figure.
fn price(rng: &mut SplitMix64, (lo, hi): (i64, i64)) -> i64 {
    const ENDINGS: [i64; 6] = [99, 99, 99, 49, 95, 0];
    let dollars = rng.between(lo, hi);
    let cents = ENDINGS.get(rng.below(ENDINGS.len())).copied().unwrap_or(99);
    dollars * 100 + cents
}

fn round_to(n: i64, step: i64) -> i64 {
    ((n + step / 2) / step * step).max(step)
}

/// A book: a title from patterns, an author from name lists, a genre blurb.
fn book(rng: &mut SplitMix64) -> Item {
    const ADJECTIVES: &[&str] = &[
        "Silent",
        "Hidden",
        "Last",
        "Crimson",
        "Forgotten",
        "Golden",
        "Midnight",
        "Painted",
        "Winter",
        "Wandering",
        "Salt",
        "Glass",
        "Quiet",
        "Burning",
    ];
    const NOUNS: &[&str] = &[
        "Lighthouse",
        "Garden",
        "Cartographer",
        "Orchard",
        "Harbour",
        "Clockmaker",
        "Library",
        "River",
        "Kingdom",
        "Lantern",
        "Voyage",
        "Alchemist",
        "Archive",
        "Beekeeper",
        "Observatory",
    ];
    const PLACES: &[&str] = &[
        "Lisbon",
        "the North Sea",
        "Kyoto",
        "the Highlands",
        "Marrakesh",
        "the Prairie",
        "Venice",
        "Patagonia",
        "Reykjavik",
        "the Danube",
    ];
    const RELATIONS: &[&str] = &["Daughter", "Apprentice", "Secret", "Promise", "Map", "Last Summer"];
    const FIRST_NAMES: &[&str] = &[
        "Amelia", "Jonah", "Priya", "Tomasz", "Ingrid", "Mateo", "Helena", "Kofi", "Yuki", "Rosalind", "Idris", "Clara",
    ];
    const LAST_NAMES: &[&str] = &[
        "Hartley",
        "Okafor",
        "Lindqvist",
        "Moreau",
        "Castellano",
        "Whitlock",
        "Nakamura",
        "Brennan",
        "Adeyemi",
        "Sorensen",
        "Vasquez",
        "Penhaligon",
    ];
    const PUBLISHERS: &[&str] =
        &["Harbor Lane Press", "Quillfeather Books", "Northwind Publishing", "Copper Kettle Editions"];
    // (genre, blurb); `{place}` is filled in.
    const GENRES: &[(&str, &str)] = &[
        ("mystery", "A twisting mystery in which a retired detective returns to {place} to solve one last case."),
        ("fantasy", "An epic fantasy of rival houses, old magic and a map of {place} that redraws itself."),
        (
            "science fiction",
            "Science fiction about the first crew to wake aboard a generation ship bound for a world named after {place}.",
        ),
        ("history", "A vivid history of trade, weather and ambition in {place}."),
        ("cookbook", "Over one hundred seasonal recipes from {place}, from slow-roasted tomatoes to cardamom buns."),
        ("biography", "The remarkable life of an engineer who built bridges across {place}, told through her letters."),
        ("travel", "A slow journey through {place} on foot, by ferry and by night train."),
        ("thriller", "A relentless thriller: one stolen ledger, three cities and a deadline in {place}."),
        ("poetry", "Poems of tides, kitchens and long winters, written between {place} and home."),
        ("self-help", "A calm, practical guide to building habits that last, drawn from a year in {place}."),
    ];

    let adjective = rng.pick(ADJECTIVES);
    let noun = rng.pick(NOUNS);
    let place = rng.pick(PLACES);
    let title = match rng.below(4) {
        0 => format!("The {adjective} {noun}"),
        1 => format!("The {noun} of {place}"),
        2 => format!("A {noun} in {place}"),
        _ => format!("The {noun}'s {}", rng.pick(RELATIONS)),
    };
    let author = format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES));
    let (genre, blurb) = GENRES.get(rng.below(GENRES.len())).copied().unwrap_or(("fiction", "A novel."));
    let hardcover = rng.below(3) == 0;
    let format = if hardcover { "hardcover" } else { "paperback" };
    let pages = round_to(rng.between(120, 880), 8);
    let publisher = rng.pick(PUBLISHERS);
    let year = rng.between(1995, 2024);
    let isbn = isbn13(rng);

    let description = format!(
        "{} By {author}; {format}, {pages} pages, published by {publisher} in {year}.",
        blurb.replace("{place}", place)
    );
    let dollars = if hardcover { (18, 34) } else { (7, 18) };
    let price_cents = price(rng, dollars);

    let mut attributes = Map::new();
    attributes.insert("author".into(), author.into());
    attributes.insert("genre".into(), genre.into());
    attributes.insert("format".into(), format.into());
    attributes.insert("pages".into(), pages.into());
    attributes.insert("publisher".into(), publisher.into());
    attributes.insert("year".into(), year.into());
    attributes.insert("language".into(), "English".into());
    attributes.insert("isbn".into(), isbn.into());
    Item { name: title, description, price_cents, attributes }
}

/// A well-formed ISBN-13 in the 978 range, check digit included.
fn isbn13(rng: &mut SplitMix64) -> String {
    let mut digits = vec![9, 7, 8];
    digits.extend((0..9).map(|_| rng.between(0, 9)));
    let sum: i64 = digits.iter().enumerate().map(|(i, d)| if i % 2 == 0 { *d } else { d * 3 }).sum();
    digits.push((10 - sum % 10) % 10);
    digits.iter().map(ToString::to_string).collect()
}

const DEFAULT_COLORS: &[&str] =
    &["black", "white", "charcoal", "navy", "olive", "cream", "burgundy", "sage green", "mustard", "sky blue"];

static SPECS: [CategorySpec; 8] = [
    CategorySpec { slug: "electronics", name: "Electronics", prefix: "ELE", kind: Generator::Goods(&ELECTRONICS) },
    CategorySpec { slug: "books", name: "Books", prefix: "BOO", kind: Generator::Books },
    CategorySpec { slug: "home", name: "Home & Living", prefix: "HOM", kind: Generator::Goods(&HOME) },
    CategorySpec { slug: "kitchen", name: "Kitchen & Dining", prefix: "KIT", kind: Generator::Goods(&KITCHEN) },
    CategorySpec { slug: "sports", name: "Sports & Outdoors", prefix: "SPO", kind: Generator::Goods(&SPORTS) },
    CategorySpec { slug: "toys", name: "Toys & Games", prefix: "TOY", kind: Generator::Goods(&TOYS) },
    CategorySpec { slug: "garden", name: "Garden & Patio", prefix: "GAR", kind: Generator::Goods(&GARDEN) },
    CategorySpec { slug: "fashion", name: "Fashion", prefix: "FAS", kind: Generator::Goods(&FASHION) },
];

static ELECTRONICS: Goods = Goods {
    brands: &["Voltique", "Nimbus", "Arcadia", "Kestrel", "Lumio", "Sonara", "Pixelon", "Quanta"],
    lines: &["Pro", "Lite", "Max", "Air", "Mini", "Plus", "Studio", "S2"],
    line_after_kind: true,
    colors: &["matte black", "arctic white", "silver", "graphite", "midnight blue", "rose gold", "forest green"],
    kinds: &[
        Kind {
            name: "Wireless Earbuds",
            noun: "wireless earbuds",
            materials: &["polycarbonate", "soft-touch plastic"],
            colors: &[],
            dollars: (29, 249),
            weight_g: (40, 70),
            features: &[
                "active noise cancellation",
                "a 30-hour battery with the case",
                "Bluetooth 5.3 multipoint pairing",
                "IPX5 sweat resistance",
                "wireless charging",
            ],
            attributes: &[("connectivity", Attr::Text("Bluetooth 5.3")), ("battery_hours", Attr::IntRange(6, 10))],
        },
        Kind {
            name: "Over-Ear Headphones",
            noun: "over-ear headphones",
            materials: &["brushed aluminium", "recycled plastic and vegan leather"],
            colors: &[],
            dollars: (59, 399),
            weight_g: (220, 320),
            features: &[
                "adaptive noise cancellation",
                "a 40-hour battery",
                "memory-foam ear cushions",
                "USB-C fast charging",
                "a fold-flat travel design",
            ],
            attributes: &[("connectivity", Attr::Text("Bluetooth 5.3")), ("battery_hours", Attr::IntRange(30, 60))],
        },
        Kind {
            name: "Bluetooth Speaker",
            noun: "Bluetooth speaker",
            materials: &["woven fabric", "rubberised silicone", "anodised aluminium"],
            colors: &[],
            dollars: (25, 299),
            weight_g: (300, 1800),
            features: &[
                "360-degree sound",
                "IP67 waterproofing",
                "a 20-hour battery",
                "stereo pairing",
                "a built-in microphone for calls",
            ],
            attributes: &[("connectivity", Attr::Text("Bluetooth 5.2")), ("waterproof", Attr::Bool(true))],
        },
        Kind {
            name: "Smartwatch",
            noun: "smartwatch",
            materials: &["aluminium", "stainless steel", "titanium"],
            colors: &[],
            dollars: (99, 499),
            weight_g: (30, 60),
            features: &[
                "an always-on AMOLED display",
                "GPS and heart-rate tracking",
                "sleep and stress insights",
                "a seven-day battery",
                "contactless payments",
            ],
            attributes: &[("display_mm", Attr::IntOneOf(&[41, 44, 46])), ("water_resistance_m", Attr::Int(50))],
        },
        Kind {
            name: "4K Monitor",
            noun: "4K monitor",
            materials: &["aluminium", "matte plastic"],
            colors: &["black", "silver", "white"],
            dollars: (229, 899),
            weight_g: (4200, 7800),
            features: &[
                "a factory-calibrated IPS panel",
                "USB-C with 90 W charging",
                "a height-adjustable stand",
                "HDR10 support",
                "a 144 Hz refresh rate",
            ],
            attributes: &[("screen_inches", Attr::IntOneOf(&[27, 32])), ("resolution", Attr::Text("3840x2160"))],
        },
        Kind {
            name: "Mechanical Keyboard",
            noun: "mechanical keyboard",
            materials: &["aluminium", "PBT plastic"],
            colors: &[],
            dollars: (49, 229),
            weight_g: (700, 1300),
            features: &[
                "hot-swappable switches",
                "per-key RGB lighting",
                "double-shot PBT keycaps",
                "wired and wireless modes",
                "a gasket-mounted plate",
            ],
            attributes: &[
                ("layout", Attr::OneOf(&["full-size", "tenkeyless", "75%"])),
                ("switches", Attr::OneOf(&["linear", "tactile", "clicky"])),
            ],
        },
        Kind {
            name: "Portable Charger",
            noun: "portable charger",
            materials: &["aluminium", "recycled plastic"],
            colors: &[],
            dollars: (19, 99),
            weight_g: (180, 450),
            features: &[
                "65 W USB-C power delivery",
                "two USB-C ports",
                "pass-through charging",
                "a compact pocket size",
                "an LED charge indicator",
            ],
            attributes: &[("capacity_mah", Attr::IntOneOf(&[10000, 20000, 26800]))],
        },
        Kind {
            name: "Action Camera",
            noun: "action camera",
            materials: &["magnesium alloy", "rubberised polycarbonate"],
            colors: &["black", "graphite", "arctic white"],
            dollars: (149, 499),
            weight_g: (120, 160),
            features: &[
                "5.3K video at 60 fps",
                "horizon-levelling stabilisation",
                "waterproofing to 10 metres",
                "a front-facing selfie screen",
                "live streaming",
            ],
            attributes: &[("video", Attr::Text("5.3K60")), ("megapixels", Attr::IntOneOf(&[20, 23, 27]))],
        },
        Kind {
            name: "E-Reader",
            noun: "e-reader",
            materials: &["soft-touch plastic", "recycled aluminium"],
            colors: &[],
            dollars: (99, 279),
            weight_g: (170, 240),
            features: &[
                "a glare-free 300 ppi screen",
                "warm front light",
                "weeks of battery life",
                "waterproofing for bath-time reading",
                "32 GB of storage",
            ],
            attributes: &[("screen_inches", Attr::IntOneOf(&[6, 7])), ("storage_gb", Attr::IntOneOf(&[16, 32]))],
        },
    ],
    closers: &[
        "Part of the {brand} {line} series.",
        "Ships with a braided USB-C cable and a two-year warranty.",
        "Pairs in seconds with phones, tablets and laptops.",
        "A favourite of commuters and home-office workers.",
        "The {line} edition refines the original with a lighter build.",
    ],
    attributes: &[("warranty_months", Attr::IntOneOf(&[12, 24, 36]))],
};

static HOME: Goods = Goods {
    brands: &["Hearthwell", "Nordlys", "Casa Mira", "Oakridge", "Linenfold", "Dunmore"],
    lines: &["Nordic", "Rustic", "Modern", "Coastal", "Heritage", "Boho", "Loft"],
    line_after_kind: false,
    colors: DEFAULT_COLORS,
    kinds: &[
        Kind {
            name: "Throw Blanket",
            noun: "throw blanket",
            materials: &["stonewashed linen", "merino wool", "organic cotton", "chunky knit acrylic"],
            colors: &[],
            dollars: (29, 149),
            weight_g: (600, 1800),
            features: &[
                "hand-knotted tassels",
                "a soft brushed finish",
                "a herringbone weave",
                "generous sofa-length sizing",
            ],
            attributes: &[("dimensions_cm", Attr::OneOf(&["130 x 170", "150 x 200"]))],
        },
        Kind {
            name: "Table Lamp",
            noun: "table lamp",
            materials: &["ceramic", "brass", "smoked glass", "rattan"],
            colors: &[],
            dollars: (35, 189),
            weight_g: (900, 3200),
            features: &["a linen drum shade", "a dimmable E27 socket", "a braided fabric cable", "a weighted base"],
            attributes: &[("bulb", Attr::Text("E27, not included")), ("height_cm", Attr::IntRange(35, 65))],
        },
        Kind {
            name: "Scented Candle",
            noun: "scented candle",
            materials: &["soy wax", "coconut and rapeseed wax"],
            colors: &["amber", "cream", "smoke grey", "sage green"],
            dollars: (14, 49),
            weight_g: (250, 650),
            features: &[
                "notes of cedarwood and fig",
                "a cotton wick",
                "a 50-hour burn time",
                "a reusable glass jar",
                "notes of sea salt and sage",
            ],
            attributes: &[("burn_hours", Attr::IntRange(35, 70))],
        },
        Kind {
            name: "Wall Mirror",
            noun: "wall mirror",
            materials: &["solid oak", "woven rattan", "reclaimed pine"],
            colors: &["natural"],
            dollars: (49, 299),
            weight_g: (2000, 9000),
            features: &["bevelled glass", "a slim profile", "hanging hardware included", "a rounded arch shape"],
            attributes: &[("diameter_cm", Attr::IntOneOf(&[50, 60, 80]))],
        },
        Kind {
            name: "Storage Basket",
            noun: "storage basket",
            materials: &["seagrass", "woven jute", "felt", "water hyacinth"],
            colors: &["natural", "charcoal", "cream"],
            dollars: (15, 69),
            weight_g: (300, 1200),
            features: &["sturdy carry handles", "a removable cotton liner", "a collapsible design", "a fold-over lid"],
            attributes: &[("volume_l", Attr::IntOneOf(&[20, 35, 50]))],
        },
        Kind {
            name: "Cushion Cover",
            noun: "cushion cover",
            materials: &["velvet", "washed linen", "boucle", "cotton canvas"],
            colors: &[],
            dollars: (12, 45),
            weight_g: (150, 350),
            features: &["a hidden zip", "piped edges", "an embroidered pattern", "a reversible design"],
            attributes: &[("dimensions_cm", Attr::OneOf(&["45 x 45", "50 x 50", "30 x 50"]))],
        },
        Kind {
            name: "Area Rug",
            noun: "area rug",
            materials: &["hand-tufted wool", "braided jute", "recycled cotton"],
            colors: &[],
            dollars: (79, 399),
            weight_g: (3000, 12000),
            features: &[
                "a low pile that suits doorways",
                "a non-slip backing",
                "a geometric Berber pattern",
                "hand-finished edges",
            ],
            attributes: &[("dimensions_cm", Attr::OneOf(&["120 x 170", "160 x 230", "200 x 290"]))],
        },
        Kind {
            name: "Wall Clock",
            noun: "wall clock",
            materials: &["walnut veneer", "powder-coated steel", "concrete"],
            colors: &["black", "white", "natural"],
            dollars: (25, 129),
            weight_g: (500, 1800),
            features: &[
                "a silent sweep movement",
                "bold Scandinavian numerals",
                "a domed glass face",
                "a minimalist dial",
            ],
            attributes: &[("diameter_cm", Attr::IntOneOf(&[30, 40, 50]))],
        },
    ],
    closers: &[
        "Part of the {brand} {line} collection.",
        "Designed to layer with the rest of the {line} range.",
        "Made in small batches and packed plastic-free.",
        "Brings warmth to living rooms, bedrooms and reading nooks.",
    ],
    attributes: &[("care", Attr::OneOf(&["wipe clean", "spot clean", "machine washable at 30C"]))],
};

static KITCHEN: Goods = Goods {
    brands: &["Copperleaf", "Ferro & Salt", "Culina", "Bramble", "Steelhaus", "Mesa"],
    lines: &["Professional", "Everyday", "Artisan", "Classic", "Compact", "Signature"],
    line_after_kind: false,
    colors: &["graphite", "matte black", "copper", "cream", "sage green", "cherry red"],
    kinds: &[
        Kind {
            name: "Chef's Knife",
            noun: "chef's knife",
            materials: &["Damascus steel", "German stainless steel", "Japanese VG-10 steel"],
            colors: &["silver", "black"],
            dollars: (39, 229),
            weight_g: (170, 260),
            features: &[
                "a full-tang pakkawood handle",
                "a hand-honed 15-degree edge",
                "a balanced bolster",
                "a protective blade guard",
            ],
            attributes: &[("blade_cm", Attr::IntOneOf(&[18, 20, 21])), ("dishwasher_safe", Attr::Bool(false))],
        },
        Kind {
            name: "Cast Iron Skillet",
            noun: "cast iron skillet",
            materials: &["pre-seasoned cast iron"],
            colors: &["black"],
            dollars: (29, 149),
            weight_g: (2200, 3600),
            features: &[
                "a helper handle",
                "pour spouts on both sides",
                "oven-safe construction to 260C",
                "even heat retention",
            ],
            attributes: &[("diameter_cm", Attr::IntOneOf(&[20, 26, 30])), ("dishwasher_safe", Attr::Bool(false))],
        },
        Kind {
            name: "Dutch Oven",
            noun: "Dutch oven",
            materials: &["enamelled cast iron"],
            colors: &[],
            dollars: (69, 349),
            weight_g: (4000, 6500),
            features: &[
                "a self-basting lid",
                "a chip-resistant enamel",
                "wide loop handles",
                "compatibility with induction hobs",
            ],
            attributes: &[("capacity_ml", Attr::IntOneOf(&[3800, 5200, 6700])), ("dishwasher_safe", Attr::Bool(true))],
        },
        Kind {
            name: "French Press",
            noun: "French press",
            materials: &["borosilicate glass", "double-walled stainless steel"],
            colors: &[],
            dollars: (19, 89),
            weight_g: (400, 900),
            features: &["a four-level filter", "a cool-touch handle", "a drip-free spout", "a tight-fitting lid"],
            attributes: &[("capacity_ml", Attr::IntOneOf(&[350, 800, 1000])), ("dishwasher_safe", Attr::Bool(true))],
        },
        Kind {
            name: "Espresso Machine",
            noun: "espresso machine",
            materials: &["brushed stainless steel", "die-cast aluminium"],
            colors: &[],
            dollars: (149, 899),
            weight_g: (5000, 11000),
            features: &[
                "a 15-bar pump",
                "a steam wand for microfoam",
                "a built-in conical burr grinder",
                "PID temperature control",
            ],
            attributes: &[("capacity_ml", Attr::IntOneOf(&[1500, 2000])), ("dishwasher_safe", Attr::Bool(false))],
        },
        Kind {
            name: "Cutting Board",
            noun: "cutting board",
            materials: &["end-grain walnut", "bamboo", "maple", "acacia wood"],
            colors: &["natural"],
            dollars: (19, 119),
            weight_g: (800, 3500),
            features: &[
                "a deep juice groove",
                "non-slip rubber feet",
                "a reversible surface",
                "a food-safe oil finish",
            ],
            attributes: &[
                ("dimensions_cm", Attr::OneOf(&["30 x 20", "40 x 28", "50 x 35"])),
                ("dishwasher_safe", Attr::Bool(false)),
            ],
        },
        Kind {
            name: "Stand Mixer",
            noun: "stand mixer",
            materials: &["die-cast metal", "enamelled steel"],
            colors: &[],
            dollars: (199, 599),
            weight_g: (6000, 11000),
            features: &[
                "a tilt-head design",
                "ten speeds",
                "a dough hook, flat beater and whisk",
                "a 5-litre stainless bowl",
            ],
            attributes: &[("power_w", Attr::IntOneOf(&[600, 800, 1000])), ("dishwasher_safe", Attr::Bool(false))],
        },
        Kind {
            name: "Electric Kettle",
            noun: "electric kettle",
            materials: &["stainless steel", "borosilicate glass"],
            colors: &[],
            dollars: (29, 149),
            weight_g: (900, 1500),
            features: &[
                "variable temperature presets",
                "a gooseneck spout for pour-over",
                "a keep-warm mode",
                "automatic shut-off",
            ],
            attributes: &[("capacity_ml", Attr::IntOneOf(&[900, 1200, 1700])), ("dishwasher_safe", Attr::Bool(false))],
        },
    ],
    closers: &[
        "Part of the {brand} {line} range.",
        "Built for busy home cooks and weekend bakers alike.",
        "Backed by a lifetime guarantee.",
        "Tested through a thousand dinners in the {brand} test kitchen.",
    ],
    attributes: &[],
};

static SPORTS: Goods = Goods {
    brands: &["Trailbound", "Apex Motion", "Riverstone", "Summit & Co", "Velocity", "Kinetik"],
    lines: &["Ultralight", "Trail", "Performance", "All-Weather", "Pro", "Essential"],
    line_after_kind: false,
    colors: &["black", "slate grey", "electric blue", "volt yellow", "coral", "forest green", "burnt orange"],
    kinds: &[
        Kind {
            name: "Yoga Mat",
            noun: "yoga mat",
            materials: &["natural rubber", "cork and rubber", "TPE foam"],
            colors: &[],
            dollars: (25, 129),
            weight_g: (900, 2500),
            features: &["a grippy non-slip surface", "alignment lines", "a carry strap", "a 6 mm cushioned core"],
            attributes: &[("sport", Attr::Text("yoga")), ("thickness_mm", Attr::IntOneOf(&[4, 5, 6]))],
        },
        Kind {
            name: "Running Shoes",
            noun: "running shoes",
            materials: &["engineered mesh", "recycled knit"],
            colors: &[],
            dollars: (79, 229),
            weight_g: (220, 320),
            features: &[
                "a responsive foam midsole",
                "a carbon-fibre plate",
                "a grippy rubber outsole",
                "reflective details for dark mornings",
            ],
            attributes: &[
                ("sport", Attr::Text("running")),
                ("size_eu", Attr::IntRange(36, 47)),
                ("drop_mm", Attr::IntOneOf(&[4, 6, 8, 10])),
            ],
        },
        Kind {
            name: "Hiking Backpack",
            noun: "hiking backpack",
            materials: &["ripstop nylon", "recycled polyester", "Dyneema composite"],
            colors: &[],
            dollars: (59, 279),
            weight_g: (700, 1900),
            features: &["a ventilated back panel", "a built-in rain cover", "hip-belt pockets", "a hydration sleeve"],
            attributes: &[("sport", Attr::Text("hiking")), ("volume_l", Attr::IntOneOf(&[22, 30, 45, 60]))],
        },
        Kind {
            name: "Tennis Racket",
            noun: "tennis racket",
            materials: &["graphite", "carbon fibre"],
            colors: &[],
            dollars: (49, 249),
            weight_g: (270, 320),
            features: &[
                "a 100 sq in head",
                "a vibration-dampening frame",
                "a 16x19 string pattern",
                "a cushioned grip",
            ],
            attributes: &[("sport", Attr::Text("tennis")), ("grip_size", Attr::IntRange(1, 4))],
        },
        Kind {
            name: "Camping Tent",
            noun: "camping tent",
            materials: &["silnylon", "polyester with aluminium poles"],
            colors: &["olive", "sand", "burnt orange", "slate grey"],
            dollars: (99, 599),
            weight_g: (1200, 4500),
            features: &[
                "a freestanding frame",
                "two doors and two vestibules",
                "a 3000 mm waterproof flysheet",
                "pitch-in-minutes colour-coded clips",
            ],
            attributes: &[("sport", Attr::Text("camping")), ("capacity_people", Attr::IntRange(1, 4))],
        },
        Kind {
            name: "Sleeping Bag",
            noun: "sleeping bag",
            materials: &["responsibly sourced down", "synthetic insulation"],
            colors: &[],
            dollars: (69, 399),
            weight_g: (700, 1800),
            features: &["a draught collar", "a compression sack", "a two-way zip", "a comfort rating of -5C"],
            attributes: &[("sport", Attr::Text("camping")), ("comfort_c", Attr::IntRange(-10, 8))],
        },
        Kind {
            name: "Adjustable Dumbbell",
            noun: "adjustable dumbbell",
            materials: &["cast iron with rubber coating", "steel"],
            colors: &["black", "slate grey"],
            dollars: (79, 449),
            weight_g: (10000, 24000),
            features: &[
                "a quick-dial weight selector",
                "a knurled chrome handle",
                "a compact storage tray",
                "anti-roll end caps",
            ],
            attributes: &[("sport", Attr::Text("fitness")), ("max_kg", Attr::IntOneOf(&[20, 24, 32]))],
        },
        Kind {
            name: "Insulated Water Bottle",
            noun: "insulated water bottle",
            materials: &["double-walled stainless steel", "BPA-free Tritan"],
            colors: &[],
            dollars: (15, 49),
            weight_g: (250, 500),
            features: &[
                "24 hours of cold",
                "a leak-proof chug cap",
                "a powder-coated finish",
                "a wide mouth for ice cubes",
            ],
            attributes: &[("sport", Attr::Text("outdoors")), ("capacity_ml", Attr::IntOneOf(&[500, 750, 1000]))],
        },
    ],
    closers: &[
        "Part of the {brand} {line} line.",
        "Field-tested on alpine trails and city tracks.",
        "Made with recycled materials wherever performance allows.",
        "Chosen by club coaches and weekend adventurers.",
    ],
    attributes: &[],
};

static TOYS: Goods = Goods {
    brands: &["Wobblewood", "Brickory", "Tinker & Twig", "Starling Toys", "PlayNest"],
    lines: &["Space", "Dinosaur", "Ocean", "Castle", "Safari", "Robot", "Pirate", "Rainforest"],
    line_after_kind: false,
    colors: &["multicolour", "pastel", "primary colours", "rainbow"],
    kinds: &[
        Kind {
            name: "Building Blocks Set",
            noun: "building blocks set",
            materials: &["ABS plastic", "plant-based plastic"],
            colors: &[],
            dollars: (19, 149),
            weight_g: (400, 2500),
            features: &[
                "an illustrated instruction booklet",
                "compatible standard studs",
                "minifigures with accessories",
                "a storage tub",
            ],
            attributes: &[("pieces", Attr::IntRange(150, 1500)), ("age_min", Attr::IntOneOf(&[6, 8, 10]))],
        },
        Kind {
            name: "Wooden Train Set",
            noun: "wooden train set",
            materials: &["beech wood", "FSC-certified birch"],
            colors: &["natural", "painted"],
            dollars: (29, 129),
            weight_g: (1200, 3500),
            features: &[
                "magnetic couplings",
                "a figure-of-eight track",
                "a working drawbridge",
                "child-safe water-based paints",
            ],
            attributes: &[("pieces", Attr::IntRange(30, 120)), ("age_min", Attr::Int(3))],
        },
        Kind {
            name: "Jigsaw Puzzle",
            noun: "jigsaw puzzle",
            materials: &["recycled board"],
            colors: &["multicolour", "pastel"],
            dollars: (12, 39),
            weight_g: (400, 1100),
            features: &[
                "linen-finish pieces",
                "a poster of the finished picture",
                "snug-fitting random cut pieces",
                "a sturdy keepsake box",
            ],
            attributes: &[("pieces", Attr::IntOneOf(&[300, 500, 1000, 1500])), ("age_min", Attr::IntOneOf(&[8, 12]))],
        },
        Kind {
            name: "Plush Toy",
            noun: "plush toy",
            materials: &["recycled polyester plush", "organic cotton"],
            colors: &["pastel", "multicolour", "natural"],
            dollars: (12, 49),
            weight_g: (150, 600),
            features: &["embroidered eyes", "a super-soft fur", "machine-washable fabric", "a cuddly bean-bag bottom"],
            attributes: &[("height_cm", Attr::IntRange(20, 45)), ("age_min", Attr::Int(0))],
        },
        Kind {
            name: "Remote Control Car",
            noun: "remote control car",
            materials: &["impact-resistant plastic"],
            colors: &[],
            dollars: (29, 149),
            weight_g: (500, 1800),
            features: &[
                "four-wheel drive",
                "a rechargeable battery",
                "a 2.4 GHz controller",
                "LED headlights",
                "all-terrain tyres",
            ],
            attributes: &[("age_min", Attr::IntOneOf(&[6, 8])), ("top_speed_kmh", Attr::IntRange(12, 35))],
        },
        Kind {
            name: "Board Game",
            noun: "board game",
            materials: &["cardboard and wooden tokens"],
            colors: &[],
            dollars: (19, 69),
            weight_g: (700, 2200),
            features: &[
                "cooperative play for the whole family",
                "games that last 30 minutes",
                "a reversible board",
                "illustrated cards",
            ],
            attributes: &[("players", Attr::OneOf(&["2-4", "2-5", "1-6"])), ("age_min", Attr::IntOneOf(&[7, 8, 10]))],
        },
        Kind {
            name: "Science Kit",
            noun: "science kit",
            materials: &["lab-grade plastic and glass"],
            colors: &[],
            dollars: (24, 89),
            weight_g: (600, 1500),
            features: &["twenty safe experiments", "a real magnifier", "a full-colour lab guide", "safety goggles"],
            attributes: &[("experiments", Attr::IntRange(12, 40)), ("age_min", Attr::IntOneOf(&[8, 10]))],
        },
    ],
    closers: &[
        "Part of the {brand} {line} adventures.",
        "Sparks hours of imaginative play.",
        "Safety-tested to EN 71 and ASTM standards.",
        "A gift grandparents love to give.",
    ],
    attributes: &[],
};

static GARDEN: Goods = Goods {
    brands: &["Greenmantle", "Fernbrook", "Rootwise", "Meadowlark", "Terracotta & Co"],
    lines: &["Heavy-Duty", "Compact", "Cottage", "Urban", "Professional", "Eco"],
    line_after_kind: false,
    colors: &["forest green", "terracotta", "slate grey", "black", "natural", "sage green"],
    kinds: &[
        Kind {
            name: "Garden Hose",
            noun: "garden hose",
            materials: &["reinforced PVC", "natural rubber"],
            colors: &[],
            dollars: (19, 89),
            weight_g: (1500, 5000),
            features: &[
                "kink-resistant braiding",
                "brass fittings",
                "a seven-pattern spray gun",
                "a wall-mounted reel",
            ],
            attributes: &[("length_m", Attr::IntOneOf(&[15, 20, 30])), ("power", Attr::Text("manual"))],
        },
        Kind {
            name: "Pruning Shears",
            noun: "pruning shears",
            materials: &["carbon steel", "stainless steel"],
            colors: &[],
            dollars: (14, 69),
            weight_g: (180, 300),
            features: &["a bypass blade", "an ergonomic rotating grip", "a sap groove", "a safety lock"],
            attributes: &[("cut_capacity_mm", Attr::IntOneOf(&[20, 22, 25])), ("power", Attr::Text("manual"))],
        },
        Kind {
            name: "Raised Garden Bed",
            noun: "raised garden bed",
            materials: &["cedar wood", "galvanised steel", "recycled plastic"],
            colors: &[],
            dollars: (59, 299),
            weight_g: (8000, 25000),
            features: &[
                "tool-free assembly",
                "open bottoms for drainage",
                "corner trellis posts",
                "rot-resistant boards",
            ],
            attributes: &[
                ("dimensions_cm", Attr::OneOf(&["120 x 60 x 30", "180 x 90 x 40", "240 x 120 x 45"])),
                ("power", Attr::Text("manual")),
            ],
        },
        Kind {
            name: "Watering Can",
            noun: "watering can",
            materials: &["galvanised steel", "powder-coated steel", "recycled plastic"],
            colors: &[],
            dollars: (15, 59),
            weight_g: (500, 1400),
            features: &["a removable brass rose", "a long reach spout", "a balanced handle", "a rust-proof finish"],
            attributes: &[("capacity_l", Attr::IntOneOf(&[5, 7, 9])), ("power", Attr::Text("manual"))],
        },
        Kind {
            name: "Solar Path Lights",
            noun: "solar path lights",
            materials: &["stainless steel", "weatherproof ABS"],
            colors: &["black", "silver", "bronze"],
            dollars: (19, 79),
            weight_g: (600, 1500),
            features: &[
                "dusk-to-dawn sensors",
                "warm white LEDs",
                "IP65 weatherproofing",
                "stake-in-ground installation",
            ],
            attributes: &[("pieces", Attr::IntOneOf(&[4, 6, 8, 12])), ("power", Attr::Text("solar"))],
        },
        Kind {
            name: "Planter",
            noun: "planter",
            materials: &["terracotta", "glazed stoneware", "fibre clay", "woven rattan"],
            colors: &[],
            dollars: (14, 149),
            weight_g: (800, 12000),
            features: &[
                "a drainage hole with plug",
                "frost-resistant glaze",
                "a matching saucer",
                "a self-watering reservoir",
            ],
            attributes: &[("diameter_cm", Attr::IntOneOf(&[20, 30, 40, 55])), ("power", Attr::Text("manual"))],
        },
        Kind {
            name: "Cordless Lawn Mower",
            noun: "cordless lawn mower",
            materials: &["steel deck", "polypropylene deck"],
            colors: &["forest green", "black", "orange"],
            dollars: (199, 549),
            weight_g: (12000, 24000),
            features: &[
                "a 40 V lithium battery",
                "six cutting heights",
                "a 50-litre grass box",
                "mulching mode",
                "fold-flat handles for storage",
            ],
            attributes: &[
                ("cutting_width_cm", Attr::IntOneOf(&[34, 38, 42, 46])),
                ("power", Attr::Text("cordless 40V")),
            ],
        },
        Kind {
            name: "Bird Feeder",
            noun: "bird feeder",
            materials: &["cedar wood", "powder-coated steel", "recycled plastic"],
            colors: &[],
            dollars: (14, 69),
            weight_g: (400, 1600),
            features: &["a squirrel-proof cage", "a weatherproof roof", "easy-fill seed ports", "a hanging chain"],
            attributes: &[("capacity_l", Attr::IntOneOf(&[1, 2, 3])), ("power", Attr::Text("manual"))],
        },
    ],
    closers: &[
        "Part of the {brand} {line} range.",
        "Built to last through many seasons of sun, rain and frost.",
        "Loved by allotment growers and balcony gardeners.",
        "Comes with a five-year guarantee against rust.",
    ],
    attributes: &[],
};

static FASHION: Goods = Goods {
    brands: &["Marlowe", "Indigo Row", "Kestrel & Kin", "Aster", "Northbay", "Sable"],
    lines: &["Relaxed", "Slim", "Classic", "Heritage", "Weekend", "Tailored"],
    line_after_kind: false,
    colors: DEFAULT_COLORS,
    kinds: &[
        Kind {
            name: "T-Shirt",
            noun: "t-shirt",
            materials: &["organic cotton jersey", "Pima cotton", "hemp and cotton blend"],
            colors: &[],
            dollars: (15, 49),
            weight_g: (140, 220),
            features: &["a ribbed crew neck", "double-stitched seams", "a garment-dyed finish", "a pre-shrunk fabric"],
            attributes: &[
                ("size", Attr::OneOf(&["XS", "S", "M", "L", "XL", "XXL"])),
                ("fit", Attr::OneOf(&["regular", "slim", "relaxed"])),
            ],
        },
        Kind {
            name: "Denim Jacket",
            noun: "denim jacket",
            materials: &["selvedge denim", "rigid organic denim", "stretch denim"],
            colors: &["indigo", "washed blue", "black", "ecru"],
            dollars: (69, 229),
            weight_g: (700, 1100),
            features: &["copper rivets", "chest flap pockets", "a corduroy collar", "a sherpa lining"],
            attributes: &[
                ("size", Attr::OneOf(&["XS", "S", "M", "L", "XL"])),
                ("fit", Attr::OneOf(&["regular", "boxy"])),
            ],
        },
        Kind {
            name: "Wool Sweater",
            noun: "wool sweater",
            materials: &["merino wool", "lambswool", "cashmere blend"],
            colors: &[],
            dollars: (59, 249),
            weight_g: (300, 600),
            features: &["a cable-knit front", "ribbed cuffs and hem", "a roll neck", "a fully fashioned knit"],
            attributes: &[
                ("size", Attr::OneOf(&["XS", "S", "M", "L", "XL"])),
                ("fit", Attr::OneOf(&["regular", "relaxed"])),
            ],
        },
        Kind {
            name: "Chinos",
            noun: "chinos",
            materials: &["cotton twill", "stretch cotton", "linen blend"],
            colors: &["khaki", "navy", "olive", "stone", "charcoal"],
            dollars: (39, 129),
            weight_g: (400, 650),
            features: &["a flat front", "a tapered leg", "a hidden coin pocket", "a soft enzyme wash"],
            attributes: &[("waist_in", Attr::IntRange(28, 40)), ("fit", Attr::OneOf(&["slim", "straight", "tapered"]))],
        },
        Kind {
            name: "Rain Jacket",
            noun: "rain jacket",
            materials: &["recycled nylon shell", "three-layer waterproof membrane"],
            colors: &[],
            dollars: (79, 299),
            weight_g: (300, 650),
            features: &["fully taped seams", "a stowaway hood", "pit zips for ventilation", "a packable pocket"],
            attributes: &[
                ("size", Attr::OneOf(&["XS", "S", "M", "L", "XL", "XXL"])),
                ("waterproof_mm", Attr::IntOneOf(&[10000, 20000])),
            ],
        },
        Kind {
            name: "Leather Belt",
            noun: "leather belt",
            materials: &["full-grain leather", "vegetable-tanned leather"],
            colors: &["tan", "dark brown", "black", "cognac"],
            dollars: (29, 119),
            weight_g: (120, 250),
            features: &["a solid brass buckle", "hand-burnished edges", "five adjustment holes", "a keeper loop"],
            attributes: &[
                ("length_cm", Attr::IntOneOf(&[85, 95, 105, 115])),
                ("width_mm", Attr::IntOneOf(&[30, 35, 38])),
            ],
        },
        Kind {
            name: "Canvas Sneakers",
            noun: "canvas sneakers",
            materials: &["organic cotton canvas", "recycled canvas"],
            colors: &[],
            dollars: (39, 119),
            weight_g: (600, 900),
            features: &["a vulcanised rubber sole", "a cushioned cork insole", "metal eyelets", "a padded collar"],
            attributes: &[("size_eu", Attr::IntRange(35, 47)), ("fit", Attr::Text("true to size"))],
        },
        Kind {
            name: "Silk Scarf",
            noun: "silk scarf",
            materials: &["mulberry silk", "silk twill"],
            colors: &[],
            dollars: (39, 169),
            weight_g: (40, 120),
            features: &["hand-rolled edges", "a botanical print", "an archive paisley pattern", "a gift box"],
            attributes: &[("dimensions_cm", Attr::OneOf(&["70 x 70", "90 x 90", "180 x 45"]))],
        },
    ],
    closers: &[
        "Part of the {brand} {line} collection.",
        "Made in a family-run workshop in Portugal.",
        "Cut to wear season after season.",
        "Pairs easily with the rest of the {line} wardrobe.",
    ],
    attributes: &[("season", Attr::OneOf(&["all-season", "spring/summer", "autumn/winter"]))],
};

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::domain::product_id_for;

    const SLUGS: [&str; 8] = ["electronics", "books", "home", "kitchen", "sports", "toys", "garden", "fashion"];

    #[test]
    fn seeds_exactly_the_eight_architecture_categories() {
        let (categories, _) = demo_catalog();
        let slugs: Vec<&str> = categories.iter().map(|c| c.slug.as_str()).collect();
        assert_eq!(slugs, SLUGS);
        assert!(categories.iter().all(|c| !c.name.trim().is_empty()));
    }

    #[test]
    fn seeds_thirty_products_in_every_category() {
        let (_, products) = demo_catalog();
        assert!(products.len() >= 200);
        assert_eq!(products.len(), SLUGS.len() * PRODUCTS_PER_CATEGORY);
        let mut per_category: BTreeMap<&str, usize> = BTreeMap::new();
        for product in &products {
            *per_category.entry(product.category.as_str()).or_default() += 1;
        }
        for slug in SLUGS {
            assert_eq!(per_category.get(slug), Some(&PRODUCTS_PER_CATEGORY), "{slug}");
        }
    }

    #[test]
    fn every_generated_body_passes_validation() {
        for input in raw_products() {
            let sku = input.sku.clone();
            if let Err(errors) = ProductDraft::validate(input) {
                panic!("{sku:?} is invalid: {errors}");
            }
        }
    }

    #[test]
    fn skus_and_names_are_unique() {
        let (_, products) = demo_catalog();
        let skus: BTreeSet<&str> = products.iter().map(|p| p.sku.as_str()).collect();
        assert_eq!(skus.len(), products.len());
        let names: BTreeSet<&str> = products.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), products.len());
    }

    #[test]
    fn skus_are_numbered_per_category_with_its_prefix() {
        let (_, products) = demo_catalog();
        assert_eq!(products[0].sku.as_str(), "ELE-0001");
        assert_eq!(products[PRODUCTS_PER_CATEGORY - 1].sku.as_str(), "ELE-0030");
        assert_eq!(products[PRODUCTS_PER_CATEGORY].sku.as_str(), "BOO-0001");
        assert!(products.iter().all(|p| {
            p.image_url.as_ref().map(|u| u.to_string())
                == Some(format!("https://img.bazaar.example/products/{}.jpg", p.sku))
        }));
    }

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(demo_catalog(), demo_catalog());
    }

    #[test]
    fn seeded_product_content_and_ids_are_stable() {
        // A changed generator changes what every machine seeds, and the ids other
        // services hold; this test makes that change visible.
        let (_, products) = demo_catalog();
        let first = &products[0];
        assert_eq!(product_id_for(&first.sku).to_string(), "ff62f420-0ba0-5b06-9652-c8c98065de3e");
        assert_eq!(first.name.as_str(), "Lumio Over-Ear Headphones Max");
        assert_eq!(first.price.amount(), 27199);
        let books_first = &products[PRODUCTS_PER_CATEGORY];
        assert_eq!(product_id_for(&books_first.sku).to_string(), "3245cbcc-77ad-5c54-8439-76d5b4b4124b");
        assert_eq!(books_first.name.as_str(), "A Library in Kyoto");
        assert_eq!(fingerprint(&products), 10_910_710_993_983_052_761);
    }

    /// FNV-1a over every product's SKU, name, description and price: any
    /// change to the generated text or prices changes it.
    fn fingerprint(products: &[ProductDraft]) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for p in products {
            let line = format!("{}|{}|{}|{}\n", p.sku, p.name, p.description, p.price.amount());
            for byte in line.bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        hash
    }

    #[test]
    fn prices_are_in_usd_within_sensible_ranges() {
        let (_, products) = demo_catalog();
        for p in &products {
            assert_eq!(p.price.currency().as_str(), "USD");
            assert!((500..=100_000).contains(&p.price.amount()), "{} costs {}", p.sku, p.price.amount());
        }
    }

    #[test]
    fn descriptions_mention_the_brand_or_author() {
        let (_, products) = demo_catalog();
        for p in &products {
            let who = p.attributes.get("brand").or_else(|| p.attributes.get("author"));
            let who = who.and_then(Value::as_str).unwrap_or_default();
            assert!(!who.is_empty(), "{} has no brand or author", p.sku);
            assert!(p.description.as_str().contains(who), "{}: {}", p.sku, p.description);
        }
    }

    #[test]
    fn isbns_carry_a_valid_check_digit() {
        let mut rng = SplitMix64(1);
        for _ in 0..100 {
            let isbn = isbn13(&mut rng);
            let digits: Vec<u32> = isbn.chars().filter_map(|c| c.to_digit(10)).collect();
            assert_eq!(digits.len(), 13);
            let sum: u32 = digits.iter().enumerate().map(|(i, d)| if i % 2 == 0 { *d } else { d * 3 }).sum();
            assert_eq!(sum % 10, 0, "{isbn}");
        }
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs for seed 1234567 from the reference C implementation.
        let mut rng = SplitMix64(1234567);
        let got: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(got, [6457827717110365317, 3203168211198807973, 9817491932198370423]);
    }
}

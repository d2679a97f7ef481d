"""Word lists the generator draws from.

Non-ASCII names are here on purpose: the module must carry UTF-8 from JSON
into Redis untouched, and ASCII-only fixtures would never show a bug there."""

FIRST_NAMES = [
    "Alice", "Bob", "Zoë", "Łukasz", "José", "François", "Søren", "Björn",
    "Ana", "Chidi", "Priya", "Mateus", "Ólafur", "Małgorzata", "Jürgen",
    "Renée", "Dmitri", "Aoife", "Nguyễn", "Çağla", "Hana", "Kofi", "Lucía",
    "Mei", "Omar", "Pablo", "Rania", "Siobhán", "Tomás", "Yusuf", "Élodie",
    "Grace", "Henrik", "Ines", "Jonas", "Karin", "Liam", "Maya", "Noah",
    "Olivia", "Ravi", "Sara", "Theo", "Uma", "Viktor", "Wen", "Ximena",
]

LAST_NAMES = [
    "Smith", "Müller", "Nowak", "García", "Dubois", "Jørgensen", "Ólafsson",
    "Kowalczyk", "Núñez", "O'Brien", "Rossi", "Silva", "Öztürk", "Novák",
    "Andersson", "Brown", "Chen", "Das", "Evans", "Fischer", "Horvát",
    "Ivanova", "Jansen", "Kim", "Lefèvre", "Martínez", "Nakamura", "Okafor",
    "Petrović", "Quinn", "Rahman", "Schröder", "Tanaka", "Urbańska", "Vargas",
    "Walker", "Yılmaz", "Zhang", "Ferreira-Lima", "van der Berg",
]

# Full names written family name first, as they are entered in CJK locales.
CJK_NAMES = [
    "李雷", "韩梅梅", "王芳", "张伟", "佐藤 健", "鈴木 花子", "김민준", "이서연",
    "陈静", "高橋 翔",
]

COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay",
             "Stark", "Wayne", "Tyrell", "Cyberdyne"]

PUBLIC_DOMAINS = ["gmail.example", "outlook.example", "proton.example",
                  "yahoo.example", "freemail.example"]

JOB_TITLES = ["Software Engineer", "Senior Software Engineer", "Product Manager",
              "Designer", "Support Engineer", "Directeur Général",
              "Chef de projet", "QA Engineer", "Data Analyst", "SRE",
              "Responsable Qualité", "エンジニア"]

DEPARTMENTS = ["Engineering", "Product", "Support", "Finance", "Marketing",
               "Sales", "Recursos Humanos", "Forschung & Entwicklung"]

LOCATIONS = ["Sydney", "San Francisco", "Kraków", "São Paulo", "Zürich",
             "東京", "Amsterdam", "Bengaluru", "Reykjavík", "Montréal"]

TIME_ZONES = ["Australia/Sydney", "America/Los_Angeles", "Europe/Warsaw",
              "America/Sao_Paulo", "Europe/Zurich", "Asia/Tokyo",
              "Europe/Amsterdam", "Asia/Kolkata", "Atlantic/Reykjavik",
              "America/Toronto"]

TEAM_GROUPS = [
    ("engineering", "All engineers"),
    ("contractors", "External contractors with limited access"),
    ("Équipe Produit", "Product team (Paris)"),
    ("営業部", "Sales department, Tokyo"),
    ("design", None),
    ("support-l1", "First-level support"),
    ("finance", ""),
    ("Zespół QA", "Quality assurance, Kraków"),
    ("data-platform", "Data platform team"),
    ("leadership", "Leadership team"),
]

BOT_NAMES = ["Jira Automation Bot", "Backup Integration", "Slack Connector",
             "Release Bot", "CI Reporter"]

# Letters that NFKD does not decompose into ASCII, for email local parts.
ASCII_FOLD = {"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae",
              "Æ": "AE", "đ": "d", "Đ": "D", "ı": "i", "'": ""}

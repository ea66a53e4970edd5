"""Training recipes: a named, shipped dataset with the LoRA settings chosen for it.

``pytest training/ --punie-recipe=tool-calling`` trains the recipe; ``--punie-recipe`` with an
unknown name lists the recipes. The ``tool-calling`` recipe's data is written by
:mod:`pytest_punie.finetune.toolcall_data` from :func:`tool_calling_spec`: the eval suite's
tool schemas (a user trains on the tools they evaluate) among many other tools, with prompts and
arguments that are not the eval suite's, and a test split of tools never seen in training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_punie.finetune.lora import LoraConfig
from pytest_punie.finetune.toolcall_data import Task, Tool, ToolcallSpec

__all__ = ["RECIPES", "Recipe", "find_recipe", "tool_calling_spec"]
from pytest_punie.tools.workspace import Workspace, make_tools


@dataclass(frozen=True)
class Recipe:
    """A shipped dataset (a folder under ``training/data``) and its LoRA settings."""

    name: str
    data: str
    config: LoraConfig
    about: str
    goal: str | None = None  # the category the recipe must raise significantly (its gate)

    def data_path(self, root: Path) -> Path:
        return Path(root) / self.data


RECIPES: Mapping[str, Recipe] = {
    "tool-calling": Recipe(
        name="tool-calling",
        data="tool-calling",
        # Sized for 2 CPU cores (about 520 tokens a line: the tool schemas fill the prompt;
        # mask_prompt trains only the last turn: the call, the next call or the answer).
        # See "Tool-calling recipe" in benchmarks/RESULTS.md for what was measured.
        config=LoraConfig(
            rank=8,
            alpha=16.0,
            num_layers=8,
            iters=120,
            batch_size=2,
            learning_rate=1e-3,
            max_seq_length=1024,
            mask_prompt=True,
            steps_per_report=10,
            steps_per_eval=60,
            val_batches=4,
        ),
        about="teach the model to call tools (single, parallel, multi-step, no tool needed)",
        goal="tool_calling",
    ),
    "sample": Recipe(
        name="sample",
        data="sample",
        config=LoraConfig(),
        about="the small mixed sample (reasoning, code, tool calls): a quick smoke run",
    ),
}


def find_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ``ValueError`` listing the recipes otherwise."""
    if name in RECIPES:
        return RECIPES[name]
    known = ", ".join(f"{r.name} ({r.about})" for r in RECIPES.values())
    raise ValueError(f"unknown recipe {name!r}; the recipes are: {known}")


# The tool-calling recipe's spec ----------------------------------------------------------------


def _schema(properties: Mapping[str, str], required: Sequence[str] | None = None) -> dict[str, Any]:
    """An object schema in pydantic-ai's shape: ``{"name": "type"}``, all required by default."""
    return {
        "additionalProperties": False,
        "properties": {name: {"type": kind} for name, kind in properties.items()},
        "required": list(properties if required is None else required),
        "type": "object",
    }


def _workspace_tools() -> list[Tool]:
    """The sandbox's tools with the schemas pydantic-ai sends for them (as in the evals)."""
    import tempfile

    texts = {
        "list_dir": ("{path}/: {f1}\n{f2}\n{f3}", "The {path} folder holds {f1}, {f2} and {f3}."),
        "read_file": ("{text}", "{path} says: {text}"),
        "write_file": ("wrote {path}", "I wrote the text to {path}."),
        "search_files": ("{f1}\n{d}/{f2}", "Matching files: {f1} and {d}/{f2}."),
    }
    with tempfile.TemporaryDirectory() as folder:
        definitions = [t.tool_def for t in make_tools(Workspace(Path(folder)), list(texts))]
    return [
        Tool(d.name, d.description or "", d.parameters_json_schema, *texts[d.name])
        for d in definitions
    ]


_TOOLS = [
    Tool("get_weather", "Get the current weather for a city.", _schema({"city": "string"}),
         "{city}: {temp} degrees, {sky}.", "In {city} it is {temp} degrees and {sky}."),
    Tool("convert_currency",
         "Convert an amount of money from one currency to another (ISO codes like USD).",
         _schema({"amount": "number", "from_currency": "string", "to_currency": "string"}),
         "{amount} {from_currency} = {rate} {to_currency}",
         "{amount} {from_currency} is about {rate} {to_currency}."),
    Tool("book_flight", "Book a flight. date is YYYY-MM-DD; cabin is economy, business or first.",
         _schema({"origin": "string", "destination": "string", "date": "string",
                  "passengers": "integer", "cabin": "string"}),
         "confirmed: {origin} -> {destination}, {date}, {passengers} x {cabin}",
         "Your {cabin} flight from {origin} to {destination} on {date} is booked."),
    Tool("create_event",
         "Create a calendar event. date is YYYY-MM-DD, start_time is HH:MM (24 hours).",
         _schema({"title": "string", "date": "string", "start_time": "string",
                  "duration_minutes": "integer"}),
         "event created: {title}", "I added {title} to your calendar."),
    Tool("get_stock_price", "Get the latest price of a stock by its ticker symbol.",
         _schema({"symbol": "string"}), "{symbol}: {price} USD",
         "{symbol} trades at {price} USD."),
    Tool("send_email", "Send an email.", _schema({"to": "string", "subject": "string",
                                                  "body": "string"}),
         "sent to {to}", "The email to {to} has been sent."),
    Tool("translate_text", "Translate text into another language (a language name).",
         _schema({"text": "string", "target_language": "string"}),
         "{translation}", "In {target_language}: {translation}"),
    Tool("get_time", "Get the current local time in a city.", _schema({"city": "string"}),
         "{clock}", "It is {clock} in {city}."),
    Tool("search_web", "Search the web and return the top results.",
         _schema({"query": "string"}), "1. {query} - overview\n2. {query} - news",
         "I found an overview and recent news about {query}."),
    Tool("set_reminder", "Set a reminder. time is HH:MM (24 hours).",
         _schema({"text": "string", "time": "string"}), "reminder set",
         "I will remind you to {text} at {time}."),
    Tool("calculate_tip", "Calculate the tip for a bill.",
         _schema({"bill_amount": "number", "percent": "integer"}), "tip: {tip}",
         "The tip is {tip}."),
    Tool("add_todo", "Add an item to the to-do list. due_date is YYYY-MM-DD.",
         _schema({"title": "string", "due_date": "string"}), "added",
         "{title} is on your list for {due_date}."),
    Tool("play_music", "Play a song by an artist.",
         _schema({"song": "string", "artist": "string"}), "playing",
         "Now playing {song} by {artist}."),
    Tool("get_news", "Get the latest headlines on a topic.", _schema({"topic": "string"}),
         "Headlines about {topic}: markets steady; new report published",
         "Top {topic} news: markets are steady and a new report was published."),
    Tool("define_word", "Look up the definition of an English word.",
         _schema({"word": "string"}), "{word}: a word with a definition",
         "Here is the definition of {word}."),
    Tool("find_restaurants", "Find restaurants in a city serving a cuisine.",
         _schema({"city": "string", "cuisine": "string"}),
         "Casa Verde; The Golden Spoon", "In {city} try Casa Verde or The Golden Spoon."),
    Tool("reserve_table", "Reserve a restaurant table. date is YYYY-MM-DD, time is HH:MM.",
         _schema({"restaurant": "string", "date": "string", "time": "string",
                  "party_size": "integer"}),
         "table reserved", "Your table at {restaurant} on {date} at {time} is reserved."),
    Tool("get_distance", "Get the driving distance between two cities in kilometres.",
         _schema({"origin": "string", "destination": "string"}), "{km} km",
         "It is {km} km from {origin} to {destination}."),
    Tool("rent_car", "Rent a car. pickup_date is YYYY-MM-DD; car_class is compact, suv or van.",
         _schema({"city": "string", "pickup_date": "string", "days": "integer",
                  "car_class": "string"}),
         "car reserved", "A {car_class} is reserved in {city} from {pickup_date}."),
    Tool("convert_units", "Convert a value from one unit to another (km, mi, kg, lb, c, f).",
         _schema({"value": "number", "from_unit": "string", "to_unit": "string"}),
         "{value} {from_unit} = {converted} {to_unit}",
         "{value} {from_unit} is {converted} {to_unit}."),
    Tool("get_population", "Get the population of a country.", _schema({"country": "string"}),
         "{country}: {people} million", "{country} has about {people} million people."),
    Tool("add_contact", "Save a contact with a name and a phone number.",
         _schema({"name": "string", "phone": "string"}), "saved",
         "{name} is saved in your contacts."),
    # held out: only in the test split
    Tool("book_hotel", "Book a hotel room. check_in is YYYY-MM-DD.",
         _schema({"city": "string", "check_in": "string", "nights": "integer",
                  "guests": "integer"}),
         "hotel booked", "Your hotel in {city} from {check_in} is booked."),
    Tool("get_forecast", "Get the weather forecast for the next days in a city.",
         _schema({"city": "string", "days": "integer"}), "{city}: {sky} for {days} days",
         "Expect {sky} weather in {city}."),
    Tool("send_sms", "Send a text message to a phone number.",
         _schema({"phone_number": "string", "message": "string"}), "delivered",
         "Your message to {phone_number} was delivered."),
    Tool("track_package", "Track a parcel by its tracking number.",
         _schema({"tracking_number": "string"}), "{tracking_number}: out for delivery",
         "Parcel {tracking_number} is out for delivery."),
]  # fmt: skip

_POOLS: dict[str, list[Any]] = {
    "city": ["Lisbon", "Oslo", "Nairobi", "Lima", "Seoul", "Cairo", "Dublin", "Vienna",
             "Manila", "Quito", "Austin", "Perth", "Kyoto", "Porto", "Zurich", "Montreal",
             "Accra", "Hanoi", "Bogota", "Tallinn", "Madrid", "Chicago", "Seattle", "Mumbai"],
    "temp": [3, 9, 14, 18, 22, 27, 31],
    "sky": ["cloudy", "sunny", "rainy", "windy", "foggy", "clear"],
    "currency": ["GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "INR", "MXN", "BRL", "NOK"],
    "amount": [20, 35, 75, 250, 480, 1200, 60, 12.5],
    "rate": ["18.40", "91.20", "412.70", "1,530.00", "66.10"],
    "date": ["2027-01-15", "2026-11-03", "2027-03-22", "2027-05-09", "2026-10-30",
             "2027-02-14", "2027-06-01"],
    "clock": ["08:15", "14:00", "16:45", "11:30", "19:20", "07:05"],
    "minutes": [15, 20, 30, 60, 90, 120],
    "count": [1, 3, 4, 5, 6],
    "cabin": ["business", "first", "economy"],
    "title": ["Budget review", "Dentist appointment", "Sprint planning", "Lunch with Maria",
              "Yoga class", "Design critique", "Quarterly report", "Piano lesson"],
    "symbol": ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "IBM", "SAP"],
    "price": ["182.40", "411.05", "96.30", "243.90"],
    "person": ["anna@example.com", "li.wei@example.org", "sam@example.net", "ops@example.com"],
    "subject": ["Meeting notes", "Invoice", "Holiday plans", "Project update"],
    "body": ["See you at ten.", "The invoice is attached.", "Back on Monday.",
             "The release is on track."],
    "phrase": ["good morning", "thank you very much", "where is the station", "see you soon"],
    "language": ["Spanish", "German", "Italian", "Japanese", "Portuguese", "Dutch"],
    "translation": ["Buenos dias", "Vielen Dank", "Dov'e la stazione", "Ate logo"],
    "query": ["solar panels", "sourdough recipes", "electric bikes", "the rust language",
              "marathon training"],
    "task": ["call the plumber", "water the plants", "take the medicine", "pay the rent"],
    "tip": ["9.00", "12.60", "4.50", "30.00"],
    "percent": [10, 15, 18, 20],
    "song": ["Yellow", "Hey Jude", "Clocks", "Bohemian Rhapsody", "Imagine"],
    "artist": ["Coldplay", "The Beatles", "Queen", "John Lennon"],
    "topic": ["science", "football", "technology", "climate", "economy"],
    "word": ["serendipity", "ephemeral", "ubiquitous", "laconic"],
    "cuisine": ["Thai", "Mexican", "Italian", "Lebanese", "vegan"],
    "restaurant": ["Casa Verde", "The Golden Spoon", "Blue Harbor"],
    "km": [120, 315, 540, 890],
    "car": ["compact", "suv", "van"],
    "value": [5, 10, 42, 100, 3.5],
    "unit": ["km", "mi", "kg", "lb"],
    "converted": ["8.05", "22.05", "16.09", "1.59"],
    "country": ["Kenya", "Peru", "Norway", "Vietnam", "Canada", "Chile"],
    "people": [5, 19, 34, 55, 99],
    "name": ["Ravi Patel", "Sofia Rossi", "Tom Becker", "Aiko Tanaka"],
    "phone": ["+1 555 0100", "+44 20 7946 0958", "+33 1 70 18 99 00"],
    "tracking": ["1Z999AA10123456784", "JD014600006281234", "LX123456789DE"],
    "dir": ["docs", "lib", "app", "config", "scripts", "assets"],
    "file": ["guide.md", "index.md", "main.js", "settings.toml", "setup.sh", "logo.svg"],
    "rootfile": ["CHANGELOG.md", "LICENSE", "setup.cfg", "pyproject.toml", "Makefile",
                 "requirements.txt", "todo.txt", "Dockerfile"],
    "pattern": ["*.md", "*.txt", "*.toml", "*.yaml", "*.csv", "*.js", "*.cfg", "*.html"],
    "ext": ["Markdown", "text", "YAML", "CSV", "JavaScript", "HTML"],
    "f": ["intro.md", "api.md", "app.js", "db.yaml", "run.sh", "report.csv"],
    "d": ["docs", "config", "lib"],
    "text": ["version = 3", "Remember to update the docs.", "MIT License", "TODO: add tests",
             "Build with make all."],
    "note": ["Buy oat milk", "version 2.1 released", "Meeting moved to Friday",
             "Deploy after lunch", "Hi there"],
    "newfile": ["todo.txt", "notes/ideas.md", "draft.md", "log.txt", "docs/plan.md"],
}  # fmt: skip

_WORKSPACE = ("workspace",)


def _call(tool: str, **arguments: Any) -> tuple[str, dict[str, Any]]:
    return (tool, arguments)


def _single(prompts: Sequence[str], tool: str, shown: tuple[str, ...] | None = None,
            **arguments: Any) -> list[Task]:  # fmt: skip
    return [Task(p, ((_call(tool, **arguments),),), shown) for p in prompts]


def _tasks() -> list[Task]:
    ws = _WORKSPACE
    tasks: list[Task] = []
    add = tasks.extend
    # workspace: single calls
    add(
        _single(
            [
                "Which files does the {dir} folder contain?",
                "Show me what is inside {dir}.",
                "List the {dir} directory for me.",
                "What's in the {dir} folder?",
            ],
            "list_dir",
            ws,
            path="{dir}",
        )
    )
    add(
        _single(
            ["What is in the current folder?", "List the top-level entries of the project."],
            "list_dir",
            ws,
            path=".",
        )
    )
    add(
        _single(
            [
                "Open {rootfile} and show it to me.",
                "Print the contents of {rootfile}.",
                "Could you read {rootfile}?",
                "I need to see {rootfile}.",
            ],
            "read_file",
            ws,
            path="{rootfile}",
        )
    )
    add(
        _single(
            [
                "Display {dir}/{file}.",
                "Open the file {dir}/{file}.",
                "What does {dir}/{file} contain?",
            ],
            "read_file",
            ws,
            path="{dir}/{file}",
        )
    )
    add(
        _single(
            [
                "Locate every {pattern} file in the project.",
                "Search the project for files matching {pattern}.",
                "Which {pattern} files exist here?",
                "Look for all {pattern} files.",
            ],
            "search_files",
            ws,
            pattern="{pattern}",
        )
    )
    add(
        _single(
            [
                "Save a file called {newfile} with the text: {note}",
                'Write "{note}" into {newfile}.',
                "Put the line {note} in a new file {newfile}.",
            ],
            "write_file",
            ws,
            path="{newfile}",
            content="{note}",
        )
    )
    # workspace: parallel and multi-step
    add(
        [
            Task(
                p,
                ((_call("read_file", path="{rootfile}"), _call("read_file", path="{rootfile2}")),),
                ws,
            )
            for p in [
                "Open {rootfile} and {rootfile2}.",
                "Show me {rootfile} as well as {rootfile2}.",
                "I want to see both {rootfile} and {rootfile2}.",
            ]
        ]
    )
    add(
        [
            Task(p, ((_call("list_dir", path="{dir}"), _call("list_dir", path="{dir2}")),), ws)
            for p in ["List the {dir} and {dir2} folders.", "What do {dir} and {dir2} contain?"]
        ]
    )
    add(
        [
            Task(
                p,
                ((_call("list_dir", path="{dir}"),), (_call("read_file", path="{dir}/{file}"),)),
                ws,
            )
            for p in [
                "Look inside the {dir} folder first, and after that open {dir}/{file}.",
                "Show the contents of {dir}, then display the file {file} in it.",
                "First list {dir}; next print {dir}/{file}.",
            ]
        ]
    )
    add(
        [
            Task(
                p,
                (
                    (_call("search_files", pattern="{pattern}"),),
                    (_call("read_file", path="{dir}/{file}"),),
                ),
                ws,
            )
            for p in [
                "Search for {pattern} files, then open {dir}/{file}.",
                "Locate the {pattern} files and afterwards read {dir}/{file}.",
            ]
        ]
    )
    add(
        [
            Task(
                p,
                (
                    (_call("read_file", path="{rootfile}"),),
                    (_call("write_file", path="{newfile}", content="{note}"),),
                ),
                ws,
            )
            for p in ["Read {rootfile}, then create {newfile} containing: {note}"]
        ]
    )
    # workspace: no tool needed
    for prompt, answer in [
        ("How many days are in a leap year?", "A leap year has 366 days."),
        ("What is 12 times 11?", "12 times 11 is 132."),
        (
            "Explain in one sentence what a variable is.",
            "A variable is a name that refers to a value stored in memory.",
        ),
        ("Which is larger, 0.7 or 0.65?", "0.7 is larger than 0.65."),
        ("Say good night in French.", "Bonne nuit."),
        ("Who wrote the play Hamlet?", "William Shakespeare wrote Hamlet."),
    ]:
        tasks.append(Task(prompt, (), ws, answer))
    # other tools: single calls with several arguments
    add(
        _single(
            [
                "How is the weather in {city} right now?",
                "Is it cold in {city} today?",
                "Tell me the current weather for {city}.",
                "{city} weather, please.",
            ],
            "get_weather",
            city="{city}",
        )
    )
    add(
        _single(
            [
                "How much is {amount} {currency} in {currency2}?",
                "Change {amount} {currency} into {currency2}.",
                "I have {amount} {currency}; what is that in {currency2}?",
            ],
            "convert_currency",
            amount="{amount}",
            from_currency="{currency}",
            to_currency="{currency2}",
        )
    )
    add(
        _single(
            [
                "Reserve {count} {cabin} seats flying {city} to {city2} on {date}.",
                "I need a {cabin} flight for {count} people from {city} to {city2}, date {date}.",
                "Get {count} people from {city} to {city2} on {date}, {cabin} class.",
            ],
            "book_flight",
            origin="{city}",
            destination="{city2}",
            date="{date}",
            passengers="{count}",
            cabin="{cabin}",
        )
    )
    add(
        _single(
            [
                "Put {title} in my calendar on {date} from {clock} for {minutes} minutes.",
                "Schedule {title} for {date} at {clock}; it takes {minutes} minutes.",
                "Add a {minutes}-minute event named {title} on {date} starting {clock}.",
            ],
            "create_event",
            title="{title}",
            date="{date}",
            start_time="{clock}",
            duration_minutes="{minutes}",
        )
    )
    add(
        _single(
            ["What is {symbol} trading at?", "Give me the share price of {symbol}."],
            "get_stock_price",
            symbol="{symbol}",
        )
    )
    add(
        _single(
            [
                "Email {person} with the subject {subject} and the message: {body}",
                "Send {person} an email titled {subject} saying {body}",
            ],
            "send_email",
            to="{person}",
            subject="{subject}",
            body="{body}",
        )
    )
    add(
        _single(
            ['Translate "{phrase}" into {language}.', "How do you say {phrase} in {language}?"],
            "translate_text",
            text="{phrase}",
            target_language="{language}",
        )
    )
    add(
        _single(
            ["What time is it in {city}?", "Tell me the local time in {city}."],
            "get_time",
            city="{city}",
        )
    )
    add(
        _single(
            ["Search the internet for {query}.", "Look up {query} online."],
            "search_web",
            query="{query}",
        )
    )
    add(
        _single(
            ["Remind me to {task} at {clock}.", "Set a reminder at {clock} to {task}."],
            "set_reminder",
            text="{task}",
            time="{clock}",
        )
    )
    add(
        _single(
            [
                "What tip should I leave on a bill of {amount} at {percent} percent?",
                "Work out a {percent}% tip for {amount}.",
            ],
            "calculate_tip",
            bill_amount="{amount}",
            percent="{percent}",
        )
    )
    add(
        _single(
            ["Add {task} to my to-do list for {date}.", "New to-do: {task}, due {date}."],
            "add_todo",
            title="{task}",
            due_date="{date}",
        )
    )
    add(
        _single(
            ["Play {song} by {artist}.", "Put on the song {song} from {artist}."],
            "play_music",
            song="{song}",
            artist="{artist}",
        )
    )
    add(
        _single(
            ["Any news about {topic}?", "Get me the latest {topic} headlines."],
            "get_news",
            topic="{topic}",
        )
    )
    add(
        _single(["Define the word {word}.", "What does {word} mean?"], "define_word", word="{word}")
    )
    add(
        _single(
            ["Find {cuisine} restaurants in {city}.", "Where can I eat {cuisine} food in {city}?"],
            "find_restaurants",
            city="{city}",
            cuisine="{cuisine}",
        )
    )
    add(
        _single(
            ["Book a table for {count} at {restaurant} on {date} at {clock}."],
            "reserve_table",
            restaurant="{restaurant}",
            date="{date}",
            time="{clock}",
            party_size="{count}",
        )
    )
    add(
        _single(
            ["How far is it from {city} to {city2}?", "Driving distance {city} to {city2}?"],
            "get_distance",
            origin="{city}",
            destination="{city2}",
        )
    )
    add(
        _single(
            ["Rent a {car} in {city} from {date} for {count} days."],
            "rent_car",
            city="{city}",
            pickup_date="{date}",
            days="{count}",
            car_class="{car}",
        )
    )
    add(
        _single(
            ["Convert {value} {unit} to {unit2}.", "How many {unit2} is {value} {unit}?"],
            "convert_units",
            value="{value}",
            from_unit="{unit}",
            to_unit="{unit2}",
        )
    )
    add(
        _single(
            ["What is the population of {country}?", "How many people live in {country}?"],
            "get_population",
            country="{country}",
        )
    )
    add(
        _single(
            ["Save {name} with the number {phone} in my contacts."],
            "add_contact",
            name="{name}",
            phone="{phone}",
        )
    )
    # other tools: parallel and multi-step
    add(
        [
            Task(p, ((_call("get_weather", city="{city}"), _call("get_weather", city="{city2}")),))
            for p in [
                "How is the weather in {city} and {city2}?",
                "Compare today's weather in {city} with {city2}.",
            ]
        ]
    )
    add(
        [
            Task(p, ((_call("get_time", city="{city}"), _call("get_time", city="{city2}")),))
            for p in ["What time is it in {city} and in {city2}?"]
        ]
    )
    add(
        [
            Task(
                p,
                (
                    (
                        _call("get_stock_price", symbol="{symbol}"),
                        _call("get_stock_price", symbol="{symbol2}"),
                    ),
                ),
            )
            for p in ["Get the prices of {symbol} and {symbol2}."]
        ]
    )
    add(
        [
            Task(
                p,
                (
                    (
                        _call("get_population", country="{country}"),
                        _call("get_population", country="{country2}"),
                    ),
                ),
            )
            for p in ["Which has more people, {country} or {country2}?"]
        ]
    )
    add(
        [
            Task(
                p,
                (
                    (_call("get_weather", city="{city}"),),
                    (_call("set_reminder", text="{task}", time="{clock}"),),
                ),
            )
            for p in ["Check the weather in {city}, then remind me at {clock} to {task}."]
        ]
    )
    add(
        [
            Task(
                p,
                (
                    (_call("find_restaurants", city="{city}", cuisine="{cuisine}"),),
                    (
                        _call(
                            "reserve_table",
                            restaurant="{restaurant}",
                            date="{date}",
                            time="{clock}",
                            party_size="{count}",
                        ),
                    ),
                ),
            )
            for p in [
                "Find {cuisine} places in {city}, then reserve {restaurant} for {count} on "
                "{date} at {clock}."
            ]
        ]
    )
    add(
        [
            Task(
                p,
                (
                    (
                        _call(
                            "convert_currency",
                            amount="{amount}",
                            from_currency="{currency}",
                            to_currency="{currency2}",
                        ),
                    ),
                    (_call("add_todo", title="{task}", due_date="{date}"),),
                ),
            )
            for p in [
                "Convert {amount} {currency} to {currency2} and then add {task} to my list "
                "for {date}."
            ]
        ]
    )
    # other tools: no tool needed
    for prompt, answer in [
        ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
        ("What is the boiling point of water in Celsius?", "Water boils at 100 degrees Celsius."),
        ("Give me a synonym for happy.", "A synonym for happy is joyful."),
        ("How many legs does a spider have?", "A spider has eight legs."),
        ("What is 9 minus 4?", "9 minus 4 is 5."),
        (
            "Write a haiku about rain.",
            "Soft rain on the roof\nquiet streets begin to shine\npuddles hold the sky",
        ),
        ("Thanks, that is all for now.", "You are welcome!"),
        ("What colour do you get by mixing blue and yellow?", "Blue and yellow make green."),
        ("Name three primary colours.", "Red, blue and yellow."),
        ("What is the square root of 81?", "The square root of 81 is 9."),
        (
            "Write a Python function that returns the square of a number.",
            "```python\ndef square(x):\n    return x * x\n```",
        ),
        ("Is 17 an odd number?", "Yes, 17 is odd."),
        (
            "Summarise what a compiler does in one sentence.",
            "A compiler translates source code into a program the machine can run.",
        ),
        ("How many minutes are in two hours?", "Two hours have 120 minutes."),
    ]:
        tasks.append(Task(prompt, (), None, answer))
    # held out (test split only)
    add(
        _single(
            ["Book a room in {city} from {date} for {count} nights for {count2} guests."],
            "book_hotel",
            city="{city}",
            check_in="{date}",
            nights="{count}",
            guests="{count2}",
        )
    )
    add(
        _single(
            ["What is the forecast for {city} over the next {count} days?"],
            "get_forecast",
            city="{city}",
            days="{count}",
        )
    )
    add(_single(["Text {phone}: {body}"], "send_sms", phone_number="{phone}", message="{body}"))
    add(_single(["Where is my parcel {tracking}?"], "track_package", tracking_number="{tracking}"))
    add(
        [
            Task(
                p,
                (
                    (
                        _call("get_forecast", city="{city}", days="{count}"),
                        _call("get_forecast", city="{city2}", days="{count}"),
                    ),
                ),
            )
            for p in ["Forecast for {city} and {city2} for {count} days."]
        ]
    )
    return tasks


HELD_OUT = frozenset({"book_hotel", "get_forecast", "send_sms", "track_package"})


def tool_calling_spec() -> ToolcallSpec:
    """The ``tool-calling`` recipe's spec (see the module docstring)."""
    workspace = _workspace_tools()
    tools = {t.name: t for t in (*workspace, *_TOOLS)}
    return ToolcallSpec(
        tools=tools,
        pools=_POOLS,
        tasks=_tasks(),
        held_out=HELD_OUT,
        toolboxes={"workspace": [t.name for t in workspace]},
    ).check()

"""Training recipes: a named, shipped dataset with the LoRA settings chosen for it.

``pytest training/ --punie-recipe=tool-calling`` trains the recipe; ``--punie-recipe`` with an
unknown name lists the recipes. The ``tool-calling`` recipe's data is written by
:mod:`pytest_punie.finetune.toolcall_data` from :func:`tool_calling_spec`:

* the eval suite's tool schemas (a user trains on the tools they evaluate) among 18 other
  hand-written tools and some 200 made-up ones (:func:`novel_tools`), with prompts and
  arguments that are not the eval suite's; every line that shows tools shows at least one
  made-up tool, so the model learns to read a schema rather than remember a name;
* the base model's own answers to code, arithmetic and chat prompts (:func:`base_prompts`, asked
  once through :mod:`pytest_punie.finetune.distill` and shipped in ``recipe_data/``), so that
  learning to call tools does not cost what the model knew;
* a test split of tools never seen in training (hand-written and made-up);
* its checkpoints: every 40 iterations, all averaged into the adapter (``select_by`` average:
  no single step's luck, and no eval run). Choosing one instead (``--punie-save-every`` with a
  figure) scores them on its **selection suite** (the valid split's first lines and
  :func:`selection_prompts`, code and sums it never trains on), never on the eval suite or the
  test split that judge the adapter afterwards.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pytest_punie.finetune.checkpoints import AVERAGE, OVERALL
from pytest_punie.finetune.distill import BaseAnswer, BasePrompt, read_answers
from pytest_punie.finetune.lora import LoraConfig
from pytest_punie.finetune.toolcall_data import Task, Tool, ToolcallSpec

__all__ = [
    "BASE_ANSWERS",
    "EVAL_TOOLS",
    "KIND_SHARES",
    "RECIPES",
    "Recipe",
    "base_answer_tasks",
    "base_prompts",
    "find_recipe",
    "novel_tools",
    "selection_prompts",
    "tool_calling_spec",
]
from pytest_punie.tools.workspace import Workspace, make_tools


@dataclass(frozen=True)
class Recipe:
    """A shipped dataset (a folder under ``training/data``) and its LoRA settings."""

    name: str
    data: str
    config: LoraConfig
    about: str
    goal: str | None = None  # the category the recipe must raise significantly (its gate)
    # checkpoints every ``save_every`` iterations, chosen by ``select_by`` (``average``: all of
    # them averaged); a figure is scored on the selection suite: the valid split's first lines
    # and these prompts (``held_out.write_selection_suite``)
    save_every: int | None = None
    select_by: str = OVERALL
    selection: Callable[[], Sequence[BasePrompt]] | None = None

    def data_path(self, root: Path) -> Path:
        return Path(root) / self.data


RECIPES: Mapping[str, Recipe] = {
    "tool-calling": Recipe(
        name="tool-calling",
        data="tool-calling",
        # Sized for about 30 minutes on 2 CPU cores: 454 tokens a line on average (the first
        # recipe's lines had 492 and trained at 9.3 s/iteration; batch 2), so 200 iterations
        # see two thirds of the 600 lines. Its validation loss was lowest at iterations 20-60 at
        # lr 1e-3 and rose after, so half that rate; the base answers (40% of the lines) are the
        # model's own text and hold it in place. mask_prompt trains only the last turn: the
        # call, the next call, the answer after the results, or the base model's own answer.
        # See "Tool-calling recipe" in benchmarks/RESULTS.md for what was measured.
        config=LoraConfig(
            rank=8,
            alpha=16.0,
            num_layers=8,
            iters=200,
            batch_size=2,
            learning_rate=5e-4,
            max_seq_length=1024,
            mask_prompt=True,
            steps_per_report=10,
            steps_per_eval=50,
            val_batches=8,
        ),
        about="teach the model to call tools (single, parallel, multi-step, no tool needed)",
        goal="tool_calling",
        # the figures swing 10-15 points between checkpoints and the last is rarely the best;
        # the best on a small selection suite was no better, their average was ("The recipe
        # with its checkpoints averaged", benchmarks/RESULTS.md)
        save_every=40,
        select_by=AVERAGE,
        selection=lambda: selection_prompts(),
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


# Unseen-looking tools -------------------------------------------------------------------------
# Tools made from a catalogue of business objects and the things one does with them (look up,
# cancel, create, set a field, list, count), with compact schemas. Every line of the recipe shows
# at least one, so the model meets new names and argument names all the time and learns to read
# the schema; the objects in ``_HELD_OUT_OBJECTS`` give the test split's tools, never trained on.


@dataclass(frozen=True)
class _Field:
    """An argument of a made-up tool: its name, JSON type, value pool and how a prompt says
    it (``{v}`` is the value; a boolean has the phrases for true and for false)."""

    name: str
    kind: str
    pool: str
    phrase: str | tuple[str, str]
    enum: bool = False

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.kind}
        if self.enum:
            schema["enum"] = list(_NOVEL_POOLS[self.pool])
        return schema


_FIELDS = {
    f.name: f
    for f in [
        _Field("priority", "string", "priority", "with {v} priority", enum=True),
        _Field("assignee", "string", "first_name", "assigned to {v}"),
        _Field("due_date", "string", "date", "due on {v}"),
        _Field("amount", "number", "money", "for {v} dollars"),
        _Field("quantity", "integer", "small_count", "with a quantity of {v}"),
        _Field("colour", "string", "colour", "in {v}"),
        _Field("size", "string", "size", "in size {v}", enum=True),
        _Field("location", "string", "city", "in {v}"),
        _Field("owner", "string", "person", "owned by {v}"),
        _Field("status", "string", "status", "with status {v}", enum=True),
        _Field("tag", "string", "tag", "tagged {v}"),
        _Field("start_date", "string", "date", "starting on {v}"),
        _Field("days", "integer", "day_count", "for {v} days"),
        _Field("team", "string", "team", "for the {v} team"),
        _Field("capacity", "integer", "seats", "for {v} people"),
        _Field("note", "string", "short_note", "with the note {v}"),
        _Field("level", "string", "level", "at {v} level", enum=True),
        _Field("language", "string", "language", "in {v}"),
        _Field("rating", "integer", "stars", "rated {v} stars"),
        _Field("weight_kg", "number", "kilos", "weighing {v} kg"),
        _Field("urgent", "boolean", "flag", ("marked urgent", "not marked urgent")),
        _Field("notify", "boolean", "flag", ("and notify me", "without notifying anyone")),
        _Field("public", "boolean", "flag", ("visible to everyone", "kept private")),
        _Field("recurring", "boolean", "flag", ("repeating every week", "just this once")),
    ]
}

# (noun, tool name part, id argument, id prefix, fields)
_OBJECTS = [
    ("support ticket", "ticket", "ticket_id", "T-", ["priority", "assignee", "urgent"]),
    ("invoice", "invoice", "invoice_id", "INV-", ["amount", "due_date"]),
    ("expense report", "expense", "expense_id", "EXP-", ["amount", "tag", "team"]),
    ("room booking", "room_booking", "booking_id", "RB-", ["capacity", "start_date", "recurring"]),
    ("playlist", "playlist", "playlist_id", "PL-", ["tag", "public"]),
    ("purchase order", "purchase_order", "order_number", "PO-", ["quantity", "amount", "notify"]),
    ("gym class", "gym_class", "class_id", "GC-", ["level", "capacity", "start_date"]),
    ("library loan", "loan", "loan_id", "LN-", ["due_date", "owner"]),
    ("parking permit", "parking_permit", "permit_id", "PP-", ["location", "days"]),
    ("virtual machine", "vm", "vm_name", "vm-", ["location", "size", "status"]),
    ("deployment", "deployment", "deployment_id", "DEP-", ["team", "status", "notify"]),
    ("build job", "build", "build_id", "B-", ["status", "tag"]),
    ("database backup", "backup", "backup_id", "BK-", ["location", "recurring"]),
    ("user account", "account", "username", "user", ["team", "status"]),
    ("coupon", "coupon", "coupon_code", "SAVE", ["amount", "due_date"]),
    ("gift card", "gift_card", "card_number", "GC", ["amount", "note"]),
    ("subscription", "subscription", "subscription_id", "SUB-", ["size", "status"]),
    ("car service appointment", "service_appointment", "appointment_id", "SVC-",
     ["location", "start_date"]),
    ("bike rental", "bike_rental", "rental_id", "BR-", ["location", "days"]),
    ("locker", "locker", "locker_number", "L", ["location", "size"]),
    ("visitor pass", "visitor_pass", "pass_id", "VP-", ["start_date", "owner"]),
    ("lab sample", "lab_sample", "sample_id", "LS-", ["weight_kg", "status"]),
    ("course enrolment", "enrolment", "enrolment_id", "EN-", ["level", "language"]),
    ("cooking recipe", "recipe", "recipe_id", "R-", ["rating", "tag"]),
    ("feedback survey", "survey", "survey_id", "SV-", ["team", "public"]),
    ("job posting", "job_posting", "posting_id", "JP-", ["location", "team", "public"]),
    ("product review", "review", "review_id", "RV-", ["rating", "public"]),
    ("bug report", "bug", "bug_id", "BUG-", ["priority", "assignee", "tag"]),
    ("timesheet", "timesheet", "timesheet_id", "TS-", ["team", "days"]),
    ("concert ticket", "concert_ticket", "ticket_code", "CT-", ["quantity", "amount"]),
    ("sensor", "sensor", "sensor_id", "S-", ["location", "status"]),
    ("work shift", "shift", "shift_id", "SH-", ["assignee", "start_date"]),
    ("warehouse pallet", "pallet", "pallet_id", "PAL-", ["weight_kg", "location"]),
    ("newsletter", "newsletter", "newsletter_id", "NL-", ["language", "recurring"]),
    ("marketing campaign", "campaign", "campaign_id", "CMP-", ["amount", "team", "start_date"]),
    ("furniture order", "furniture_order", "order_id", "FO-", ["colour", "quantity"]),
]  # fmt: skip

# only in the test split: tools made from these are never trained on
_HELD_OUT_OBJECTS = [
    ("insurance claim", "claim", "claim_number", "CL-", ["amount", "status"]),
    ("warranty", "warranty", "serial_number", "SN", ["days", "owner"]),
    ("conference talk", "talk", "talk_id", "TK-", ["level", "language"]),
    ("printer job", "print_job", "job_id", "PJ-", ["quantity", "colour"]),
]  # fmt: skip

_NOVEL_POOLS: dict[str, list[Any]] = {
    "priority": ["low", "normal", "high", "urgent"],
    "first_name": ["Maya", "Jonas", "Priya", "Omar", "Lena", "Kofi", "Ines", "Tariq"],
    "money": [12.5, 49.99, 120, 310.75, 75, 18.2, 999],
    "small_count": [2, 3, 5, 8, 12, 20],
    "colour": ["red", "blue", "green", "black", "white", "grey"],
    "size": ["small", "medium", "large"],
    "status": ["open", "closed", "pending", "active"],
    "tag": ["billing", "travel", "hardware", "design", "onboarding", "research"],
    "day_count": [1, 2, 3, 7, 14, 30],
    "team": ["sales", "support", "design", "finance", "platform", "legal"],
    "seats": [4, 6, 10, 25, 60],
    "short_note": ["fragile", "call first", "ring twice", "leave at desk"],
    "level": ["beginner", "intermediate", "advanced"],
    "stars": [1, 2, 3, 4, 5],
    "kilos": [0.5, 2.5, 12, 30.5, 7.25],
    "flag": [True, False],
    "items_found": [2, 3, 4, 7, 11],
}  # fmt: skip

_NOVEL_WEIGHT = 0.25  # a made-up tool's task against a hand-written one's (1): about half each
_GET = ("get", "fetch", "lookup", "show")
_CANCEL = ("cancel", "delete", "remove", "close")
_CREATE = ("create", "add", "new", "open")
_SET = ("set", "update", "change")
_LIST = ("list", "find", "search")

_GET_PROMPTS = ["Show me {noun} {key}.", "Look up {noun} {key}.",
                "What are the details of {noun} {key}?", "Pull up {noun} {key} for me.",
                "Can you check {noun} {key}?"]  # fmt: skip
_CANCEL_PROMPTS = ["Cancel {noun} {key}.", "Please get rid of {noun} {key}.",
                   "I no longer need {noun} {key}; cancel it."]  # fmt: skip
_CREATE_PROMPTS = ["Create a {noun} {phrases}.", "Add a new {noun} {phrases}.",
                   "I need a new {noun} {phrases}.", "Set up a {noun} {phrases}."]  # fmt: skip
_SET_PROMPTS = ["Set the {label} of {noun} {key} to {value}.",
                "Change the {label} on {noun} {key} to {value}.",
                "{noun} {key} should have {label} {value}; update it."]  # fmt: skip
_LIST_PROMPTS = ["List the {nouns} {phrase}.", "Which {nouns} are there {phrase}?",
                 "Find every {noun} {phrase}."]  # fmt: skip
_COUNT_PROMPTS = ["How many {nouns} are there {phrase}?", "Count the {nouns} {phrase}."]


def _plural(word: str) -> str:
    """The English plural of a catalogue noun (the last word of ``word``)."""
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _object_tools(
    obj: tuple[str, str, str, str, list[str]], rng: random.Random
) -> tuple[list[Tool], list[Task], dict[str, list[Any]]]:
    """The tools, tasks and id pool of one catalogue object."""
    noun, part, key_name, prefix, field_names = obj
    nouns, parts = _plural(noun), _plural(part)
    fields = [_FIELDS[name] for name in field_names]
    pool = f"{part}_key"
    pools = {pool: [f"{prefix}{rng.randint(1000, 9999)}" for _ in range(6)]}
    key, key2 = f"{{{pool}}}", f"{{{pool}2}}"

    def schema(*args: _Field | str) -> dict[str, Any]:
        properties = {
            a if isinstance(a, str) else a.name: {"type": "string"} if isinstance(a, str)
            else a.schema()
            for a in args
        }  # fmt: skip
        return {"type": "object", "properties": properties, "required": list(properties)}

    def name(verbs: tuple[str, ...], suffix: str = "") -> str:
        return f"{rng.choice(verbs)}_{part}{suffix}"

    def phrase(field: _Field, value: Any = None) -> str:
        if isinstance(field.phrase, tuple):
            return field.phrase[0] if value else field.phrase[1]
        return field.phrase.replace("{v}", f"{{{field.pool}}}")

    tools: list[Tool] = []
    tasks: list[Task] = []
    status = "{status}"
    called = f"{{{key_name}}}"  # a result and an answer name the id their own call was given
    get = Tool(name(_GET), f"Get a {noun} by its id.", schema(key_name),
               f"{called}: {status}", f"The {noun} {called} is {status}.")  # fmt: skip
    cancel = Tool(name(_CANCEL), f"Cancel a {noun}.", schema(key_name),
                  f"cancelled {called}", f"The {noun} {called} is cancelled.")  # fmt: skip
    tools += [get, cancel]
    for tool, prompts in ((get, _GET_PROMPTS), (cancel, _CANCEL_PROMPTS)):
        text = rng.choice(prompts).format(noun=noun, key=key)
        tasks.append(Task(text, (((tool.name, {key_name: key}),),), weight=_NOVEL_WEIGHT))
    tasks.append(Task(f"Show me {nouns} {key} and {key2}.",
                      (((get.name, {key_name: key}), (get.name, {key_name: key2})),),
                      weight=_NOVEL_WEIGHT))  # fmt: skip
    tasks.append(Task(rng.choice(["Check {noun} {key}, then cancel it.",
                                  "Look at {noun} {key} first and then cancel it."]).format(
                          noun=noun, key=key),
                      (((get.name, {key_name: key}),), ((cancel.name, {key_name: key}),)),
                      weight=_NOVEL_WEIGHT))  # fmt: skip
    plain = [f for f in fields if f.kind != "boolean"]
    flags = [f for f in fields if f.kind == "boolean"]
    created = Tool(name(_CREATE), f"Create a {noun}.", schema(*fields),
                   f"created {{{pool}}}", f"I created the {noun} {{{pool}}}.")  # fmt: skip
    tools.append(created)
    for value in (True, False) if flags else (None,):
        arguments: dict[str, Any] = {f.name: f"{{{f.pool}}}" for f in plain}
        arguments.update({f.name: value for f in flags})
        phrases = " ".join([*(phrase(f) for f in plain), *(phrase(f, value) for f in flags)])
        text = rng.choice(_CREATE_PROMPTS).format(noun=noun, phrases=phrases)
        tasks.append(Task(text, (((created.name, arguments),),), weight=_NOVEL_WEIGHT))
    if plain:
        field = rng.choice(plain)
        given = f"{{{field.pool}}}"
        setter = Tool(name(_SET, f"_{field.name}"), f"Set the {field.label} of a {noun}.",
                      schema(key_name, field), "updated",
                      f"The {noun} {called} now has {field.label} {{{field.name}}}.")  # fmt: skip
        text = rng.choice(_SET_PROMPTS).format(noun=noun, key=key, label=field.label, value=given)
        text = text[0].upper() + text[1:]
        lister = Tool(f"{rng.choice(_LIST)}_{parts}", f"List {nouns} by {field.label}.",
                      schema(field),
                      f"{{{pool}}}, {{{pool}2}}",
                      f"I found {{{pool}}} and {{{pool}2}}.")  # fmt: skip
        counter = Tool(f"count_{parts}", f"Count {nouns} by {field.label}.", schema(field),
                       "{items_found}", "There are {items_found} of them.")  # fmt: skip
        tools += [setter, lister, counter]
        tasks.append(Task(text, (((setter.name, {key_name: key, field.name: given}),),),
                          weight=_NOVEL_WEIGHT))  # fmt: skip
        for tool, prompts in ((lister, _LIST_PROMPTS), (counter, _COUNT_PROMPTS)):
            text = rng.choice(prompts).format(noun=noun, nouns=nouns, phrase=phrase(field))
            tasks.append(Task(text, (((tool.name, {field.name: given}),),), weight=_NOVEL_WEIGHT))
        text = f"Find the {nouns} {phrase(field)}, then show me the first one."
        steps = (((lister.name, {field.name: given}),), ((get.name, {key_name: key}),))
        tasks.append(Task(text, steps, weight=_NOVEL_WEIGHT))
    return tools, tasks, pools


def novel_tools(
    seed: int = 0,
) -> tuple[dict[str, Tool], list[Task], dict[str, list[Any]], frozenset[str]]:
    """The made-up tools (trained and held out), their tasks and pools, and the held-out names."""
    rng = random.Random(seed)
    tools: dict[str, Tool] = {}
    tasks: list[Task] = []
    pools: dict[str, list[Any]] = dict(_NOVEL_POOLS)
    held_out: set[str] = set()
    for objects, kept_out in ((_OBJECTS, False), (_HELD_OUT_OBJECTS, True)):
        for obj in objects:
            made, object_tasks, object_pools = _object_tools(obj, rng)
            for tool in made:
                if tool.name in tools:
                    raise ValueError(f"two made-up tools are called {tool.name}")
                tools[tool.name] = tool
            tasks += object_tasks
            pools.update(object_pools)
            if kept_out:
                held_out.update(t.name for t in made)
    return tools, tasks, pools, frozenset(held_out)


HELD_OUT = frozenset({"book_hotel", "get_forecast", "send_sms", "track_package"})


# the tools the eval suite shows, with the schemas it sends (pydantic-ai's, from functions)
EVAL_TOOLS = frozenset({"list_dir", "read_file", "write_file", "search_files", "get_weather",
                        "convert_currency", "book_flight", "create_event"})  # fmt: skip
BASE_ANSWERS = Path(__file__).resolve().parent / "recipe_data" / "tool-calling-base-answers.jsonl"


def _compact(tool: Tool) -> Tool:
    """The tool without ``additionalProperties`` (the eval suite's own tools keep theirs)."""
    if tool.name in EVAL_TOOLS:
        return tool
    parameters = {k: v for k, v in tool.parameters.items() if k != "additionalProperties"}
    return replace(tool, parameters=parameters)


def _literal(text: str) -> str:
    """``text`` as a template that fills to itself (code has braces)."""
    return text.replace("{", "{{").replace("}", "}}")


# how often each kind of the base model's answers is drawn: code twice as often as the others,
# as what the adapter loses first is code (issue 21's runs: -10 to -17 points, reasoning -2 to -4)
KIND_SHARES = {"code": 2.0, "arithmetic": 1.0, "chat": 1.0}


def base_answer_tasks(answers: Sequence[BaseAnswer]) -> list[Task]:
    """No-tool tasks from the base model's usable answers: the prompt and its own answer, shown
    with no tools, other tools, or (every fourth) the workspace tools, as the evals ask. Each
    kind (code, arithmetic, chat) is drawn by its ``KIND_SHARES`` share (a kind not named
    there: 1), and within a kind an answer that passed its check twice as often as one that
    did not."""
    usable = [a for a in answers if a.usable]
    weights = [2.0 if a.passed else 1.0 for a in usable]
    totals: dict[str, float] = {}
    for answer, weight in zip(usable, weights, strict=True):
        totals[answer.kind] = totals.get(answer.kind, 0.0) + weight
    tasks = []
    for n, (answer, weight) in enumerate(zip(usable, weights, strict=True)):
        shown = _WORKSPACE if n % 4 == 3 else None
        share = 100 * KIND_SHARES.get(answer.kind, 1.0) * weight / totals[answer.kind]
        tasks.append(Task(_literal(answer.prompt), (), shown, _literal(answer.answer), share))
    return tasks


def tool_calling_spec(base_answers: Path | None = None) -> ToolcallSpec:
    """The ``tool-calling`` recipe's spec (see the module docstring); ``base_answers`` is the
    file of the base model's answers (default: the shipped ones, made from :func:`base_prompts`
    with the default model)."""
    workspace = _workspace_tools()
    made, made_tasks, made_pools, made_held_out = novel_tools()
    tools = {t.name: _compact(t) for t in (*workspace, *_TOOLS)}
    clash = sorted(tools.keys() & made.keys())
    clash += sorted(k for k in _POOLS.keys() & made_pools.keys() if _POOLS[k] != made_pools[k])
    if clash:
        raise ValueError(f"made-up tools or pools clash with the recipe's: {', '.join(clash)}")
    answers = read_answers(base_answers or BASE_ANSWERS)
    return ToolcallSpec(
        tools={**tools, **made},
        pools={**_POOLS, **made_pools},
        tasks=[*_tasks(), *made_tasks, *base_answer_tasks(answers)],
        held_out=HELD_OUT | made_held_out,
        toolboxes={"workspace": [t.name for t in workspace]},
        distractors=3,
        min_distractors=1,
        novel=frozenset(made),
        answer_share=0.45,
        bare_share=0.5,
        weights={"single": 3, "parallel": 1, "multi_step": 2, "no_tool": 4},
    ).check()


# The tool-calling recipe's self-distillation prompts --------------------------------------------
# Prompts that need no tool, none of them an eval prompt (the leakage check runs on the recipe's
# data, these included): the base model's own answers to them keep code, arithmetic and chat
# in the adapter (see ``finetune.distill``). Each has a check, so only right answers are kept.

_CODE_TASKS = [
    ("cube(x)", "returns x cubed", ["cube(3) == 27", "cube(-2) == -8"]),
    ("is_odd(n)", "returns True when the integer n is odd", ["is_odd(3)", "not is_odd(4)"]),
    ("middle_char(text)", "returns the middle character of a string of odd length",
     ["middle_char('abc') == 'b'", "middle_char('x') == 'x'"]),
    ("repeat_each(items)", "returns a list in which every element appears twice in a row",
     ["repeat_each([1, 2]) == [1, 1, 2, 2]", "repeat_each([]) == []"]),
    ("product(numbers)", "multiplies all the numbers of a list together (1 for an empty list)",
     ["product([2, 3, 4]) == 24", "product([]) == 1"]),
    ("km_to_miles(km)", "converts kilometres to miles (1 km is 0.621371 miles)",
     ["abs(km_to_miles(10) - 6.21371) < 0.001", "km_to_miles(0) == 0"]),
    ("count_uppercase(text)", "counts the uppercase letters in a string",
     ["count_uppercase('Hello World') == 2", "count_uppercase('abc') == 0"]),
    ("double_all(numbers)", "returns a new list with every number doubled",
     ["double_all([1, 2, 3]) == [2, 4, 6]", "double_all([]) == []"]),
    ("keep_positive(numbers)", "returns only the numbers greater than zero",
     ["keep_positive([3, -1, 0, 5]) == [3, 5]", "keep_positive([-2]) == []"]),
    ("word_lengths(words)", "returns the length of each word in a list",
     ["word_lengths(['hi', 'there']) == [2, 5]", "word_lengths([]) == []"]),
    ("max_of_three(a, b, c)", "returns the largest of three numbers",
     ["max_of_three(1, 9, 4) == 9", "max_of_three(-1, -5, -3) == -1"]),
    ("distance(a, b)", "returns the absolute difference between two numbers",
     ["distance(3, 10) == 7", "distance(10, 3) == 7"]),
    ("is_leap_year(year)", "returns True for a leap year in the Gregorian calendar",
     ["is_leap_year(2024)", "not is_leap_year(1900)", "is_leap_year(2000)"]),
    ("count_of(items, target)", "counts how many times target appears in a list",
     ["count_of([1, 2, 1, 1], 1) == 3", "count_of([], 5) == 0"]),
    ("merge(a, b)", "merges two dicts into a new dict, the values of b winning",
     ["merge({'x': 1}, {'y': 2}) == {'x': 1, 'y': 2}", "merge({'x': 1}, {'x': 3}) == {'x': 3}"]),
    ("swap(a, b)", "returns the two values as a tuple in the opposite order",
     ["swap(1, 2) == (2, 1)", "swap('a', 'b') == ('b', 'a')"]),
    ("repeat_text(text, times)", "returns the text repeated the given number of times",
     ["repeat_text('ab', 3) == 'ababab'", "repeat_text('x', 0) == ''"]),
    ("initials(name)", "returns the uppercase first letters of each part of a full name",
     ["initials('Ada Lovelace') == 'AL'", "initials('grace brewster hopper') == 'GBH'"]),
    ("longest_word(words)", "returns the longest word in a list (the first one on a tie)",
     ["longest_word(['a', 'abc', 'ab']) == 'abc'", "longest_word(['xy', 'zw']) == 'xy'"]),
    ("one_to_n(n)", "returns the list of whole numbers from 1 to n",
     ["one_to_n(4) == [1, 2, 3, 4]", "one_to_n(0) == []"]),
    ("squares(numbers)", "returns the square of every number in a list",
     ["squares([1, 2, 3]) == [1, 4, 9]", "squares([]) == []"]),
    ("is_sorted(numbers)", "returns True when a list is in ascending order",
     ["is_sorted([1, 2, 2, 5])", "not is_sorted([3, 1])", "is_sorted([])"]),
    ("count_spaces(text)", "counts the space characters in a string",
     ["count_spaces('a b c') == 2", "count_spaces('abc') == 0"]),
    ("shout(text)", "returns the text in uppercase followed by an exclamation mark",
     ["shout('hi') == 'HI!'", "shout('ok go') == 'OK GO!'"]),
    ("starts_with_vowel(word)", "returns True when a word starts with a, e, i, o or u",
     ["starts_with_vowel('apple')", "not starts_with_vowel('pear')"]),
    ("minutes_to_seconds(minutes)", "converts minutes to seconds",
     ["minutes_to_seconds(2) == 120", "minutes_to_seconds(0) == 0"]),
    ("percent_of(part, whole)", "returns what percentage part is of whole",
     ["percent_of(25, 200) == 12.5", "percent_of(3, 3) == 100"]),
    ("middle_value(a, b, c)", "returns the median of three different numbers",
     ["middle_value(3, 1, 2) == 2", "middle_value(10, 30, 20) == 20"]),
    ("join_with_dashes(words)", "joins a list of words with '-' between them",
     ["join_with_dashes(['a', 'b', 'c']) == 'a-b-c'", "join_with_dashes([]) == ''"]),
    ("split_commas(line)", "splits a line of text on commas into a list of strings",
     ["split_commas('a,b,c') == ['a', 'b', 'c']", "split_commas('x') == ['x']"]),
    ("strip_spaces(text)", "removes every space character from a string",
     ["strip_spaces(' a b ') == 'ab'", "strip_spaces('') == ''"]),
    ("digit_count(text)", "counts the characters of a string that are digits",
     ["digit_count('a1b22') == 3", "digit_count('none') == 0"]),
    ("sorted_keys(mapping)", "returns the keys of a dict as a sorted list",
     ["sorted_keys({'b': 1, 'a': 2}) == ['a', 'b']", "sorted_keys({}) == []"]),
    ("invert(mapping)", "swaps the keys and values of a dict",
     ["invert({'a': 1, 'b': 2}) == {1: 'a', 2: 'b'}", "invert({}) == {}"]),
    ("safe_divide(a, b)", "returns a divided by b, or None when b is zero",
     ["safe_divide(9, 3) == 3", "safe_divide(1, 0) is None"]),
    ("is_empty(items)", "returns True when a list has no elements",
     ["is_empty([])", "not is_empty([0])"]),
    ("count_true(values)", "counts the values in a list that are True",
     ["count_true([True, False, True]) == 2", "count_true([]) == 0"]),
    ("sign(n)", "returns -1 for a negative number, 0 for zero and 1 for a positive number",
     ["sign(-4) == -1", "sign(0) == 0", "sign(9) == 1"]),
    ("triangle_area(base, height)", "returns the area of a triangle",
     ["triangle_area(4, 5) == 10", "triangle_area(3, 3) == 4.5"]),
    ("circle_area(radius)", "returns the area of a circle",
     ["abs(circle_area(1) - 3.14159) < 0.001", "circle_area(0) == 0"]),
    ("rectangle_perimeter(width, height)", "returns the perimeter of a rectangle",
     ["rectangle_perimeter(2, 3) == 10", "rectangle_perimeter(5, 5) == 20"]),
    ("evens_up_to(n)", "returns the even numbers from 0 to n inclusive",
     ["evens_up_to(6) == [0, 2, 4, 6]", "evens_up_to(1) == [0]"]),
    ("two_to_the(n)", "returns 2 raised to the power n",
     ["two_to_the(3) == 8", "two_to_the(0) == 1"]),
    ("divides(a, b)", "returns True when a is divisible by b",
     ["divides(10, 5)", "not divides(10, 3)"]),
    ("underscores(text)", "replaces every space in a string with an underscore",
     ["underscores('a b c') == 'a_b_c'", "underscores('ab') == 'ab'"]),
    ("total_letters(words)", "returns the total number of characters in a list of words",
     ["total_letters(['ab', 'cde']) == 5", "total_letters([]) == 0"]),
    ("countdown(n)", "returns the list of numbers from n down to 1",
     ["countdown(3) == [3, 2, 1]", "countdown(0) == []"]),
    ("distinct_count(items)", "returns how many different values a list holds",
     ["distinct_count([1, 1, 2, 3, 3]) == 3", "distinct_count([]) == 0"]),
    ("position(items, target)", "returns the index of target in a list, or -1 when absent",
     ["position([5, 6, 7], 6) == 1", "position([5], 9) == -1"]),
    ("count_negative(numbers)", "counts the numbers below zero in a list",
     ["count_negative([-1, 2, -3]) == 2", "count_negative([]) == 0"]),
    ("without_first(items)", "returns a list without its first element",
     ["without_first([1, 2, 3]) == [2, 3]", "without_first([1]) == []"]),
    ("greet(name)", "returns the string 'Hello, ' followed by the name and '!'",
     ["greet('Sam') == 'Hello, Sam!'", "greet('') == 'Hello, !'"]),
    ("average_length(words)", "returns the mean length of the words in a non-empty list",
     ["average_length(['ab', 'abcd']) == 3", "average_length(['x']) == 1"]),
    ("nth_square(n)", "returns the n-th square number, n times n",
     ["nth_square(4) == 16", "nth_square(0) == 0"]),
    ("has_duplicates(items)", "returns True when some value appears more than once in a list",
     ["has_duplicates([1, 2, 1])", "not has_duplicates([1, 2, 3])"]),
    ("only_strings(values)", "returns the elements of a list that are strings",
     ["only_strings([1, 'a', None, 'b']) == ['a', 'b']", "only_strings([]) == []"]),
    ("pounds_to_kg(pounds)", "converts pounds to kilograms (1 pound is 0.453592 kg)",
     ["abs(pounds_to_kg(10) - 4.53592) < 0.001", "pounds_to_kg(0) == 0"]),
    ("seconds_to_hours(seconds)", "converts seconds to hours",
     ["seconds_to_hours(7200) == 2", "seconds_to_hours(1800) == 0.5"]),
]  # fmt: skip

_CODE_STYLES = [
    "Write a Python function {signature} that {what}.",
    "Implement {signature} in Python: it {what}.",
    "Create a Python function named {name} ({signature}) that {what}.",
]

_ARITHMETIC: list[tuple[str, Callable[[int, int], int]]] = [
    ("Compute {a} + {b}.", lambda a, b: a + b),
    ("Calculate {a} plus {b}.", lambda a, b: a + b),
    ("What do you get when you add {a} and {b}?", lambda a, b: a + b),
    ("What is the sum of {a} and {b}?", lambda a, b: a + b),
    ("Subtract {b} from {a}.", lambda a, b: a - b),
    ("What is {a} take away {b}?", lambda a, b: a - b),
    ("Calculate {a} times {b}.", lambda a, b: a * b),
    ("What is the product of {a} and {b}?", lambda a, b: a * b),
    ("Multiply {a} by {b}.", lambda a, b: a * b),
]
_DIVISION = ["Divide {total} by {b}.", "What is {total} shared equally into {b} parts?"]
_WORD_PROBLEMS: list[tuple[str, Callable[[int, int], int]]] = [
    ("A bag holds {a} marbles and {b} more are put in. How many marbles are in the bag now?",
     lambda a, b: a + b),
    ("There are {a} rows with {b} chairs in each row. How many chairs are there?",
     lambda a, b: a * b),
    ("A book has {a} pages and Lena has read {b} of them. How many pages are left to read?",
     lambda a, b: a - b),
    ("A bus carries {a} people and {b} get off at the first stop. How many people stay on?",
     lambda a, b: a - b),
    ("Each box of crayons has {b} crayons. How many crayons are in {a} boxes?",
     lambda a, b: a * b),
    ("A farmer has {a} cows and buys {b} more. How many cows does the farmer have?",
     lambda a, b: a + b),
    ("A runner runs {b} kilometres every day for {a} days. How far is that in kilometres?",
     lambda a, b: a * b),
]  # fmt: skip

_CHAT = [
    ("Name the largest planet in our solar system.", ["Jupiter"]),
    ("Which animal is called the king of the jungle?", ["lion"]),
    ("What is the opposite of cold?", ["hot"]),
    ("What is the plural of mouse?", ["mice"]),
    ("Which ocean is the largest on Earth?", ["Pacific"]),
    ("How many continents are there on Earth?", 7),
    ("At what temperature in Celsius does water freeze?", 0),
    ("Who wrote Romeo and Juliet?", ["Shakespeare"]),
    ("What language do people speak in Brazil?", ["Portuguese"]),
    ("What is the chemical symbol for gold?", ["Au"]),
    ("Say hello in Spanish.", ["hola"]),
    ("What is the capital city of Japan?", ["Tokyo"]),
    ("Which city is the capital of Canada?", ["Ottawa"]),
    ("Tell me the capital of Spain.", ["Madrid"]),
    ("Which planet is closest to the sun?", ["Mercury"]),
    ("What sweet food do bees make?", ["honey"]),
    ("How many days does a week have?", 7),
    ("What does CPU stand for?", ["processing", "unit"]),
    ("What does HTML stand for?", ["markup", "language"]),
    ("What is the tallest mountain in the world?", ["Everest"]),
    ("Which river is the longest in Africa?", ["Nile"]),
    ("What is the main ingredient of guacamole?", ["avocado"]),
    ("What do you call a young cat?", ["kitten"]),
    ("What do you call a young dog?", ["puppy"]),
    ("What is H2O better known as?", ["water"]),
    ("Is the sun a star? Answer yes or no.", ["yes"]),
    ("Which season comes after winter?", ["spring"]),
    ("What colour is fresh grass?", ["green"]),
    ("In which country are the pyramids of Giza?", ["Egypt"]),
    ("Which instrument has 88 black and white keys?", ["piano"]),
    ("What is the past tense of the verb run?", ["ran"]),
    ("What is the opposite of early?", ["late"]),
    ("Which metal is liquid at room temperature?", ["mercury"]),
    ("What does a caterpillar turn into?", r"(?i)butterfl|moth"),
    ("How many wheels does a bicycle have?", 2),
    ("What is the freezing point of water in Fahrenheit?", 32),
    ("Which animal gives us wool?", ["sheep"]),
    ("What is the capital of Germany?", ["Berlin"]),
    ("What is the largest mammal on Earth?", ["whale"]),
    ("Which organ pumps blood around the body?", ["heart"]),
    ("Write one sentence about the sea.", r"\w+ \w+"),
    ("Suggest a name for a pet goldfish.", r"\w"),
    ("Describe a rainbow in one sentence.", r"\w+ \w+"),
    ("Tell me a fun fact about dolphins.", r"\w+ \w+"),
    ("Give me a synonym for big.", r"\w"),
    ("Give me two tips for sleeping better.", r"\w+ \w+"),
    ("What is Python used for? Answer briefly.", r"\w+ \w+"),
    ("Good morning! Can you help me with something?", r"\w"),
    ("Thank you for your help earlier.", r"\w"),
    ("Explain in one sentence what a computer does.", r"\w+ \w+"),
    ("Write a short sentence wishing a friend luck on a test.", r"\w+ \w+"),
    ("What is a noun? Answer in one sentence.", r"\w+ \w+"),
    ("Give an example of a fruit that is red.", r"\w"),
    ("Explain what a list is in Python in one sentence.", r"\w+ \w+"),
    ("What is the difference between a for loop and a while loop? Be brief.", r"\w+ \w+"),
    ("Why do we need sleep? Answer in one sentence.", r"\w+ \w+"),
    ("What is recursion in programming? One sentence, please.", r"\w+ \w+"),
    ("Write a friendly one-line greeting for a new colleague.", r"\w+ \w+"),
]  # fmt: skip


def _expected(check: Any) -> dict[str, Any]:
    if isinstance(check, int):
        return {"number": check}
    if isinstance(check, str):
        return {"regex": check}
    return {"keywords": list(check)}


def _code_prompts(tasks: Sequence[tuple[str, str, list[str]]], prefix: str) -> list[BasePrompt]:
    """A prompt per code task (``prefix-<name>``), the styles in turn, its tests as asserts."""
    prompts = []
    for number, (signature, what, tests) in enumerate(tasks):
        name = signature.partition("(")[0]
        style = _CODE_STYLES[number % len(_CODE_STYLES)]
        text = style.format(signature=signature, name=name, what=what)
        checks = {"python_tests": [f"assert {test}" for test in tests]}
        prompts.append(BasePrompt(f"{prefix}-{name}", "code", text, checks))
    return prompts


def base_prompts(seed: int = 0) -> list[BasePrompt]:
    """The tool-calling recipe's self-distillation prompts: code tasks with asserts,
    arithmetic and word problems with their numbers, short chat with keywords (or any text
    where any answer will do)."""
    rng = random.Random(seed)
    prompts = _code_prompts(_CODE_TASKS, "code")
    for number in range(90):
        template, operation = _ARITHMETIC[number % len(_ARITHMETIC)]
        a, b = rng.randint(11, 99), rng.randint(2, 60)
        if number % 9 in (4, 5):  # subtraction stays non-negative
            a, b = max(a, b), min(a, b)
        if number % 9 >= 6:  # products of a 2-digit and a 1-digit number
            b = rng.randint(2, 9)
        text = template.format(a=a, b=b)
        prompts.append(BasePrompt(f"arithmetic-{number}", "arithmetic", text,
                                  {"number": operation(a, b)}))  # fmt: skip
    for number in range(16):
        b = rng.randint(2, 9)
        total = b * rng.randint(3, 15)
        text = _DIVISION[number % len(_DIVISION)].format(total=total, b=b)
        prompts.append(BasePrompt(f"division-{number}", "arithmetic", text,
                                  {"number": total // b}))  # fmt: skip
    for number in range(35):
        template, operation = _WORD_PROBLEMS[number % len(_WORD_PROBLEMS)]
        a, b = rng.randint(12, 60), rng.randint(2, 11)
        text = template.format(a=a, b=b)
        prompts.append(BasePrompt(f"word-problem-{number}", "arithmetic", text,
                                  {"number": operation(a, b)}))  # fmt: skip
    for number, (text, check) in enumerate(_CHAT):
        prompts.append(BasePrompt(f"chat-{number}", "chat", text, _expected(check)))
    return prompts


# The tool-calling recipe's selection prompts ------------------------------------------------------
# Code and arithmetic the recipe never trains on and the eval suite never asks: with the valid
# split's lines, the cases its checkpoints are chosen by (``held_out.write_selection_suite``), so
# the checkpoint that keeps what the model knew is chosen without a look at the gate's cases.

_SELECTION_CODE_TASKS = [
    ("square_all(numbers)", "returns a new list with every number squared",
     ["square_all([1, 2, 3]) == [1, 4, 9]", "square_all([]) == []"]),
    ("is_negative(n)", "returns True when the number n is below zero",
     ["is_negative(-3)", "not is_negative(0)", "not is_negative(5)"]),
    ("first_char(text)", "returns the first character of a non-empty string",
     ["first_char('hello') == 'h'", "first_char('a') == 'a'"]),
    ("sum_list(numbers)", "returns the sum of all the numbers of a list (0 for an empty list)",
     ["sum_list([1, 2, 3]) == 6", "sum_list([]) == 0"]),
    ("hours_to_minutes(hours)", "converts hours to minutes",
     ["hours_to_minutes(2) == 120", "hours_to_minutes(0) == 0"]),
    ("count_words(text)", "counts the words of a sentence separated by spaces",
     ["count_words('one two three') == 3", "count_words('hi') == 1"]),
    ("min_of_two(a, b)", "returns the smaller of two numbers",
     ["min_of_two(4, 9) == 4", "min_of_two(-2, -7) == -7"]),
    ("ends_with_dot(text)", "returns True when a string ends with a full stop",
     ["ends_with_dot('Done.')", "not ends_with_dot('Done')"]),
    ("halve_all(numbers)", "returns a new list with every number divided by 2",
     ["halve_all([2, 4]) == [1, 2]", "halve_all([]) == []"]),
    ("lower_all(words)", "returns the words of a list in lowercase",
     ["lower_all(['Hi', 'THERE']) == ['hi', 'there']", "lower_all([]) == []"]),
    ("rectangle_area(width, height)", "returns the area of a rectangle",
     ["rectangle_area(3, 4) == 12", "rectangle_area(0, 5) == 0"]),
    ("add_one(numbers)", "returns a new list with 1 added to every number",
     ["add_one([1, 2]) == [2, 3]", "add_one([]) == []"]),
]  # fmt: skip


def selection_prompts(seed: int = 1000) -> list[BasePrompt]:
    """The tool-calling recipe's selection prompts: 12 code tasks with asserts and 8 sums and
    word problems with their numbers, none of them a prompt of :func:`base_prompts` (another
    seed draws the numbers) or of the eval suite."""
    rng = random.Random(seed)
    prompts = _code_prompts(_SELECTION_CODE_TASKS, "select-code")
    for number in range(8):
        pool = _ARITHMETIC if number % 2 else _WORD_PROBLEMS
        template, operation = pool[(number * 5) % len(pool)]
        a, b = rng.randint(12, 60), rng.randint(2, 11)
        text, answer = template.format(a=a, b=b), {"number": operation(a, b)}
        prompts.append(BasePrompt(f"select-arithmetic-{number}", "arithmetic", text, answer))
    return prompts

"""A seeded generator of short, simple children's stories: the corpus the project makes itself.

TinyStories (Eldan & Li, 2023) showed that a small LM learns fluent English from stories a 3-year-old
understands; this generator imitates that register (a hero, a place, an object, a problem, a helper,
a resolution, a moral) so the pretraining recipe runs on a fresh machine with no download. It is no
substitute for the real data: its vocabulary is a few hundred words and its plots are templates.

Story ``i`` of seed ``s`` depends on ``(s, i)`` only, so ``generate_stories(seed, n)`` is a prefix of
``generate_stories(seed, m)`` for ``n < m``, and every process produces the same text for a seed.
Run ``python -m xtts_jax.text.stories -n 3`` to read a few.
"""

from __future__ import annotations

import argparse
import random
import re
from typing import Iterator

DEFAULT_N_STORIES = 8000
GIRLS = "Lily Mia Sara Anna Zoe Emma Lucy Ella Rosa Nina Ivy Ruby Amy Kate Jane Molly".split()
BOYS = "Tom Ben Max Sam Leo Jack Tim Finn Jake Noah Owen Eli Bob Dan Joe Timmy".split()
ANIMALS = "bunny cat dog bear fox duck mouse frog bird puppy kitten squirrel owl pig lamb turtle".split()
TRAITS = "kind brave happy curious shy playful friendly clever little gentle funny busy".split()
PLACES = [
    "a big forest", "a small town", "a sunny park", "a quiet farm", "a tiny village", "a green garden",
    "a house by the sea", "a busy city", "a cozy house on a hill", "a field full of flowers",
]
LIKES = [
    "to play with balls", "to run and jump", "to sing songs", "to draw pictures", "to look at the stars",
    "to dig in the sand", "to climb trees", "to read books", "to bake cookies", "to splash in puddles",
    "to dance in the sun", "to build with blocks", "to pick flowers", "to play hide and seek",
]
OBJECTS = [
    "red ball", "blue kite", "soft teddy bear", "shiny toy car", "yellow balloon", "old book",
    "little box", "pretty shell", "green cup", "loud drum", "gold key", "toy robot", "small boat",
]
HIDING = ["under the bed", "behind a big rock", "in the tall grass", "under a pile of leaves",
          "next to the old tree", "inside a bush", "under the table", "behind the door"]
GROWNUPS = ["Mom", "Dad", "Grandma", "Grandpa", "the old owl", "a wise turtle"]
FOODS = ["a cake", "cookies", "a pie", "pancakes", "bread", "soup"]
FLYERS = ["blue kite", "yellow balloon", "red ball", "big hat", "paper plane"]
CREATURES = [("little bird", "had a hurt wing and could not fly"), ("tiny puppy", "was lost and could not find its home"),
             ("baby duck", "was stuck in the mud"), ("small kitten", "was cold and hungry")]

OPENINGS = [
    "Once upon a time, in {place}, there lived a {trait} {kind} named {H}.",
    "Once upon a time, there was a {trait} {kind} named {H}. {He} lived in {place}.",
    "One day, a {trait} {kind} named {H} was playing in {place}.",
    "There was once a {kind} called {H}. {H} was very {trait} and lived in {place}.",
    "{H} was a {trait} {kind} who lived in {place}.",
]
LIKE_LINES = ["{H} loved {like}.", "{He} liked {like} more than anything.", "Every day, {H} wanted {like}.",
              "{His} favorite thing was {like_ing}."]
FRIEND_LINES = ["{H} had a friend named {F}, a {fkind}.", "{His} best friend was a {fkind} named {F}.",
                "One morning, {H} met a {fkind} named {F}."]

# Each plot is a list of beats; each beat is a list of alternative templates, one of which is drawn.
PLOTS = {
    "lost": [
        ["{H} had a {obj}. {He} loved it very much.", "{H} got a {obj} as a gift. It was {his} favorite toy."],
        ["One day, {H} could not find {his} {obj}.", "But then the {obj} was gone! {H} looked around, but it was not there."],
        ["{H} felt sad. {He} looked everywhere, but {he} could not find it.", "{H} started to cry. \"Where is my {obj}?\" {he} said."],
        ["{F} saw {H} and asked, \"Why are you sad?\" \"I lost my {obj},\" said {H}. \"I will help you!\" said {F}."],
        ["They looked together. At last, {F} found the {obj} {hide}.", "{F} had a good idea. {Fhe} looked {hide}, and there it was!"],
        ["{H} was so happy. \"Thank you, {F}!\" {he} said, and gave {F} a big hug."],
    ],
    "tree": [
        ["{H} and {F} were playing with a {flyer} in the wind.", "{H} took {his} {flyer} outside to play with {F}."],
        ["Suddenly, the {flyer} flew up and got stuck in a tall tree.", "Oops! The {flyer} went up, up, up and got stuck in a tree."],
        ["{H} jumped and jumped, but {he} could not reach it.", "{H} tried to climb the tree, but it was too high."],
        ["\"What can we do?\" asked {H}. {F} thought for a moment. \"Let's get a long stick!\" {Fhe} said.",
         "{F} ran to get {G}. {G} came with a ladder."],
        ["Soon the {flyer} was down again. {H} and {F} cheered.", "They got the {flyer} down, and it was not broken at all."],
    ],
    "share": [
        ["{H} and {F} found a {obj} in {place_short}.", "{H} brought a {obj} to play with {F}."],
        ["\"It is mine!\" said {H}. \"No, I want it!\" said {F}. They both pulled the {obj}.",
         "{F} wanted to play with the {obj} too, but {H} did not want to share."],
        ["{F} felt sad and walked away. {H} was alone, and it was not fun anymore.",
         "They started to fight. {G} came and said, \"It is better to share.\""],
        ["{H} thought about it. \"I am sorry, {F}. Let's take turns,\" {he} said.",
         "{H} gave the {obj} to {F}. \"You can play first,\" {he} said with a smile."],
        ["They took turns and played together all day. Sharing was much more fun.",
         "{F} smiled, and they played with the {obj} together until the sun went down."],
    ],
    "dark": [
        ["One night, {H} could not sleep. {His} room was very dark.", "When the storm came, there was a loud noise. Boom!"],
        ["{H} was scared. {He} hid under {his} blanket.", "{H} felt scared and ran to find {G}."],
        ["{G} gave {H} a hug. \"There is nothing to be scared of,\" {G} said. \"I am here with you.\""],
        ["{G} showed {H} a little light. The shadows were only {his} toys.", "They sang a quiet song together, and the noise went away."],
        ["{H} was not scared anymore. {He} smiled and went to sleep.", "{H} felt brave. Soon {he} was fast asleep."],
    ],
    "broken": [
        ["{H} was playing with {his} {obj} when it fell down.", "{F} wanted to see {H}'s {obj}, but it slipped and fell."],
        ["Crack! The {obj} was broken.", "The {obj} broke into two pieces."],
        ["{H} was very sad. Big tears came down {his} face.", "{H} felt angry at first, and then {he} felt sad."],
        ["{G} saw the {obj} and said, \"Do not worry. We can fix it.\"",
         "\"I am sorry,\" said {F}. \"Let me help you fix it.\""],
        ["They used some glue and fixed the {obj}. It looked almost new.", "With a little tape and a lot of care, the {obj} was fixed."],
        ["{H} was happy again and said thank you.", "{H} smiled. Now {he} could play with the {obj} again."],
    ],
    "rain": [
        ["{H} and {F} wanted to have a picnic in {place_short}.", "It was a sunny day, and {H} wanted to play outside with {F}."],
        ["But then dark clouds came, and it started to rain.", "Suddenly, big drops of rain fell from the sky."],
        ["{H} was sad. \"Now we cannot play,\" {he} said.", "{H} and {F} ran inside. They were wet and sad."],
        ["{G} said, \"You can have your picnic inside!\"", "{F} said, \"Let's build a fort and play inside!\""],
        ["They had lots of fun inside. When the rain stopped, they saw a big rainbow in the sky.",
         "They played all afternoon, and soon the sun came out again."],
    ],
    "help": [
        ["One day, {H} was walking in {place_short} when {he} heard a small sound.", "{H} was playing when {he} saw something move."],
        ["It was a {creature}. The {creature} {trouble}.", "{H} found a {creature} that {trouble}."],
        ["{H} wanted to help. {He} picked it up very gently.", "\"Do not be scared,\" said {H}. \"I will help you.\""],
        ["{H} took it home, and {G} helped {him} take care of it.", "{H} gave it some water and kept it warm."],
        ["After some days, it was strong again. It was so happy, and it became {H}'s friend.",
         "Soon it was well again. It jumped and played with {H}, and {H} felt proud."],
    ],
    "race": [
        ["{H} and {F} wanted to have a race to the big tree.", "There was a race in {place_short}, and {H} wanted to win."],
        ["\"Ready, set, go!\" They ran as fast as they could.", "{H} ran fast. {He} was almost at the end."],
        ["But {H} tripped on a rock and fell down. {His} knee hurt.", "Then {F} fell down and started to cry."],
        ["{F} stopped and helped {H} get up.", "{H} stopped running and went back to help {F}."],
        ["They walked to the end together, holding hands. Everyone clapped for them.",
         "They did not win the race, but they were very happy to be friends."],
    ],
    "bake": [
        ["{H} and {F} wanted to make {food} for {G}.", "One day, {H} wanted to bake {food} with {F}."],
        ["They got flour, eggs and sugar. They mixed and mixed.", "They put everything in a big bowl and started to mix."],
        ["Oh no! The flour spilled everywhere. The kitchen was a big mess.", "{H} dropped the bowl, and there was a big mess."],
        ["{H} and {F} looked at each other and laughed. Then they cleaned up together.",
         "They did not give up. They cleaned the kitchen and tried again."],
        ["At last, {food} was ready. It was yummy! {G} was very happy.", "When it was done, they shared {food} with {G}. It tasted so good."],
    ],
}
MORALS = {
    "lost": ["{H} learned that friends help each other.", "From that day on, {H} kept {his} {obj} in a safe place."],
    "tree": ["{H} learned that two friends can do more than one.", "From then on, they played far away from tall trees."],
    "share": ["{H} learned that sharing makes everyone happy.", "From that day on, {H} always shared {his} toys."],
    "dark": ["{H} learned that it is okay to be scared sometimes.", "From then on, {H} was not afraid of the dark."],
    "broken": ["{H} learned that broken things can be fixed with love.", "{H} learned to be careful with {his} toys."],
    "rain": ["They learned that a rainy day can be fun too.", "{H} learned that there is always something fun to do."],
    "help": ["{H} learned that helping others feels good.", "{H} learned to be kind to all animals."],
    "race": ["{H} learned that being a good friend is better than winning.", "They learned that it is fun to play together."],
    "bake": ["They learned that making mistakes is okay.", "{H} learned that cooking with friends is fun."],
}
ENDINGS = ["And they lived happily ever after.", "The end.", "{H} and {F} were best friends forever.", ""]


def _character(rng: random.Random, exclude: str = "") -> dict[str, str]:
    """A name, what it is ("girl", "dog", ...) and its pronouns."""
    if rng.random() < 0.5:
        girl = rng.random() < 0.5
        kind = "girl" if girl else "boy"
    else:
        girl, kind = rng.random() < 0.5, rng.choice(ANIMALS)
    name = rng.choice([n for n in (GIRLS if girl else BOYS) if n != exclude])
    he, him, his = ("she", "her", "her") if girl else ("he", "him", "his")
    return {"name": name, "kind": kind, "he": he, "him": him, "his": his}


def _fill(template: str, ctx: dict[str, str]) -> str:
    text = template.format(**ctx)
    # Capitalise sentence starts that came from a slot ("... came. the old owl said").
    text = re.sub(r'([.!?]"? "?)([a-z])', lambda m: m[1] + m[2].upper(), text)
    return text[:1].upper() + text[1:]


def story(seed: int, index: int) -> str:
    """Story ``index`` of ``seed``: a few short paragraphs, plain ASCII."""
    # A string seed is hashed with SHA-512 by random.Random, so it does not depend on PYTHONHASHSEED.
    rng = random.Random(f"xtts_jax.stories:{seed}:{index}")
    hero = _character(rng)
    friend = _character(rng, exclude=hero["name"])
    place = rng.choice(PLACES)
    like = rng.choice(LIKES)
    creature, trouble = rng.choice(CREATURES)
    ctx = {
        "H": hero["name"], "kind": hero["kind"], "he": hero["he"], "him": hero["him"], "his": hero["his"],
        "He": hero["he"].capitalize(), "His": hero["his"].capitalize(),
        "F": friend["name"], "fkind": friend["kind"], "Fhe": friend["he"].capitalize(),
        "trait": rng.choice(TRAITS), "place": place, "place_short": place.replace("a ", "the ", 1),
        "like": like, "like_ing": _gerund(like), "obj": rng.choice(OBJECTS), "hide": rng.choice(HIDING),
        "G": rng.choice(GROWNUPS), "food": rng.choice(FOODS), "flyer": rng.choice(FLYERS),
        "creature": creature, "trouble": trouble,
    }
    plot = rng.choice(sorted(PLOTS))
    intro = [rng.choice(OPENINGS), rng.choice(LIKE_LINES)]
    if plot != "dark" or rng.random() < 0.5:  # "dark" is the one plot without the friend
        intro.append(rng.choice(FRIEND_LINES))
    beats = [rng.choice(beat) for beat in PLOTS[plot]]
    split = rng.randint(2, len(beats) - 1)
    ending = [rng.choice(MORALS[plot]), rng.choice(ENDINGS)]
    paragraphs = [intro, beats[:split], beats[split:] + ending]
    return "\n\n".join(" ".join(_fill(t, ctx) for t in p if t) for p in paragraphs)


def _gerund(like: str) -> str:
    """'to play with balls' -> 'playing with balls'."""
    verb, _, rest = like.removeprefix("to ").partition(" ")
    if verb.endswith("e"):
        verb = verb[:-1]
    elif verb in ("run", "dig"):
        verb += verb[-1]
    return f"{verb}ing {rest}"


def generate_stories(seed: int = 0, n_stories: int = DEFAULT_N_STORIES) -> Iterator[str]:
    """``n_stories`` stories for ``seed``, lazily (~525 characters each; the default is ~4 MB of text)."""
    for index in range(n_stories):
        yield story(seed, index)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Print stories of the embedded corpus.")
    parser.add_argument("-n", type=int, default=3, help="how many stories")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print("\n<|endoftext|>\n".join(generate_stories(args.seed, args.n)))


if __name__ == "__main__":
    main()

"""Generate the embedded sample corpus (``sample_corpus.txt``) deterministically.

Every sentence pattern and word list below was written for this project; nothing is
taken from third-party text.  The output is mixed Chinese with some English,
digits and full-width / ASCII punctuation, one document per line, a few hundred
documents, well under 2 MB.  Re-run to regenerate (the output is committed):

    python -m data_tools.sample_data.generate
"""
import os
import random

CITIES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "西安", "南京", "重庆", "苏州", "长沙", "青岛", "厦门", "昆明", "哈尔滨"]
COMPANIES = ["华光科技", "远航电子", "青禾农业", "星河软件", "东方物流", "云帆数据", "金石建材", "海川制药"]
PEOPLE = ["王老师", "李工程师", "张医生", "陈教授", "刘经理", "赵同学", "孙记者", "周师傅", "吴主任", "郑阿姨"]
TECH = ["人工智能", "机器学习", "深度学习", "云计算", "大数据", "区块链", "物联网", "自然语言处理", "计算机视觉", "量子计算"]
ENGLISH = ["GPU", "AI", "Transformer", "5G", "API", "Wi-Fi", "Linux", "BERT"]
LANGS = ["Python", "Java", "Go", "Rust", "C++", "JavaScript"]
APPS = ["App", "小程序", "客户端", "网页"]
FOODS = ["火锅", "小笼包", "热干面", "肉夹馍", "糖醋排骨", "麻婆豆腐", "酸辣粉", "煎饼果子", "桂林米粉", "北京烤鸭", "蛋炒饭", "牛肉面"]
SPORTS = ["足球", "篮球", "乒乓球", "羽毛球", "游泳", "马拉松", "排球", "网球"]
SUBJECTS = ["数学", "语文", "英语", "物理", "化学", "历史", "地理", "生物"]
SEASONS = ["春天", "夏天", "秋天", "冬天"]
WEATHER = ["晴朗", "多云", "小雨", "大雨", "阴天", "大风", "雾霾", "小雪"]
BOOKS = ["《城市的早晨》", "《数据与生活》", "《山河行记》", "《写给年轻人的经济学》", "《厨房里的科学》", "《远方的来信》"]

TOPICS = {
    "tech": [
        "{company}今天发布了一款基于{tech}的新产品，售价为{price}元。",
        "据介绍，这款产品采用了最新的{en}技术，性能比上一代提升了{pct}%。",
        "{person}表示：“{tech}正在改变我们的工作方式，但它并不能取代人的判断。”",
        "很多开发者习惯用{lang}编写程序，因为它简单、灵活，而且社区非常活跃。",
        "在{city}举行的开发者大会上，有超过{num}名工程师参加了关于{tech}的讨论。",
        "研究人员发现，模型的规模越大，需要的训练数据也就越多。",
        "训练一个中文语言模型，往往需要几十GB的文本和好几块GPU。",
        "有人问：{tech}会不会让很多人失业？",
        "专家认为，真正的问题不是技术本身，而是我们如何使用它。",
        "目前，该公司的研发团队已经扩大到{num}人，其中一半以上是年轻人。",
        "这项技术首先会应用在医疗、教育和交通三个领域。",
        "用户可以通过手机{app}直接查看数据，也可以导出为PDF文件。",
        "为了保护隐私，所有数据都会在本地处理，不会上传到服务器。",
        "测试结果显示，新系统每秒可以处理{num}条请求，延迟低于{small}毫秒。",
        "不过，也有工程师指出，这个方案在{en}上的兼容性还需要改进。",
    ],
    "weather": [
        "{city}今天{weather}，最高气温{temp}℃，最低气温{temp2}℃。",
        "气象台提醒市民，明天可能会有{weather}天气，出门请带好雨具。",
        "{season}的{city}特别美，街道两旁的树都换上了新的颜色。",
        "由于连续几天{weather}，不少市民选择在家休息。",
        "据统计，今年{season}的平均气温比去年同期高了{small}度。",
        "早上七点，公园里已经有很多老人在锻炼身体了。",
        "天气预报说，这个周末会转晴，适合全家一起出去走走！",
        "{person}说：“我小时候，{city}的冬天比现在冷多了。”",
        "受冷空气影响，北方部分地区将出现大风降温天气；南方则以阴雨为主。",
        "专家建议，老人和孩子在换季的时候要注意增减衣物。",
    ],
    "food": [
        "说到{city}的美食，很多人第一个想到的就是{food}。",
        "这家小店开了{year2}年，每天早上门口都排着长队。",
        "老板告诉记者，做好{food}的关键在于火候和调料。",
        "一碗{food}只要{price2}元，味道却一点也不输大饭店。",
        "{person}每个周末都会带孩子来这里吃{food}。",
        "有外国游客说：“This is amazing！我从来没吃过这么好吃的东西。”",
        "厨师先把肉切成小块，再加入葱、姜、蒜一起翻炒。",
        "最近几年，越来越多的年轻人喜欢在家自己做饭。",
        "你知道{food}最早是从哪里来的吗？",
        "据说，这道菜的做法已经流传了一百多年……",
        "很多人认为，家乡的味道是任何地方都替代不了的。",
        "晚饭后，大家坐在院子里聊天、喝茶，一直到深夜。",
    ],
    "sports": [
        "在昨晚进行的{sport}比赛中，{city}队以{score}战胜了对手。",
        "这是该队本赛季取得的第{small}场胜利。",
        "赛后，主教练表示：“队员们今天发挥得非常好，我为他们感到骄傲！”",
        "{person}已经坚持跑步{year2}年了，还参加过三次全程马拉松。",
        "专家建议，普通人每周至少运动三次，每次不少于{small2}分钟。",
        "学校最近组织了一场{sport}友谊赛，吸引了{num}多名学生参加。",
        "比赛进入最后一分钟，场上的比分仍然是平局。",
        "观众们站起来，大声为自己支持的球队加油。",
        "有记者问他成功的秘诀是什么，他笑着说：“没有秘诀，就是每天练习。”",
        "下一场比赛将于{month}月{day}日在{city}举行。",
    ],
    "education": [
        "今年{city}共有{num}名学生参加了高考。",
        "{person}教了{year2}年{subject}，是学生们最喜欢的老师之一。",
        "她常说：“学习不是为了考试，而是为了理解这个世界。”",
        "为了减轻学生负担，学校取消了周末补课。",
        "很多家长希望孩子多读书，少玩手机。",
        "图书馆新到了一批书，其中包括{book}和{book2}。",
        "在{subject}课上，同学们分成小组，一起讨论问题、完成实验。",
        "有学生问：“老师，为什么天空是蓝色的？”",
        "老师没有直接回答，而是让大家回家查资料，第二天再来讨论。",
        "调查显示，约{pct}%的大学生每天使用手机{app}学习外语。",
        "放学以后，操场上到处都是打球和跑步的学生。",
        "这次期末考试，全班的{subject}平均分提高了{small}分。",
    ],
    "economy": [
        "国家统计局数据显示，{year}年全国居民人均可支配收入增长了{pct2}%。",
        "{company}第三季度的营业收入为{num}万元，同比增长{pct}%。",
        "分析人士认为，消费市场正在逐步恢复，但仍面临一些不确定因素。",
        "在{city}，新开的商场吸引了大量年轻消费者。",
        "线上购物已经成为很多家庭的日常习惯。",
        "{person}说，现在买菜、交水电费都可以在手机上完成，非常方便。",
        "据报道，今年“双十一”期间，快递业务量再创新高。",
        "一些小企业反映，原材料价格上涨给经营带来了压力。",
        "为了支持创业，当地政府推出了多项优惠政策；其中包括减免租金和提供低息贷款。",
        "专家提醒，投资有风险，大家不要盲目跟风。",
        "今年前{small}个月，{city}的进出口总额达到{num}亿元。",
    ],
    "life": [
        "周末的早上，{person}喜欢在{city}的老街上散步。",
        "街角有一家书店，店里放着轻柔的音乐，还有几只懒洋洋的猫。",
        "她最近在读{book}，觉得书里写的就是自己的生活。",
        "小区里新建了一个花园，邻居们常常在那里聊天。",
        "有一天，他在地铁上捡到一个钱包，立刻交给了工作人员。",
        "失主找到他的时候，一定要请他吃饭，他却笑着拒绝了。",
        "“这是每个人都应该做的事情。”他说。",
        "晚上十点，城市的灯光依然明亮，路上还有很多行人。",
        "我们常常忙着赶路，却忘了停下来看看身边的风景。",
        "搬到{city}已经{year2}年了，我渐渐喜欢上了这座城市。",
        "你有没有想过，十年以后的自己会在哪里？",
        "妈妈打电话来，问我什么时候回家过年。",
        "窗外下起了{weather2}，我泡了一杯茶，安静地坐着。",
        "朋友送给我一本{book}，扉页上写着：To my best friend。",
    ],
    "history": [
        "{city}是一座有着两千多年历史的古城。",
        "城里保存着许多古老的建筑，每年都吸引大量游客。",
        "据史书记载，这里曾经是重要的商业中心。",
        "{person}研究当地历史已经有{year2}年，写过好几本相关的书。",
        "在他看来，保护历史文化和发展经济并不矛盾。",
        "博物馆里展出了{num}多件文物，其中一些是第一次公开展示。",
        "一位参观者感叹：“原来我们的祖先这么有智慧！”",
        "考古学家在附近发现了一处古代遗址，出土了大量陶器和铜器。",
        "这些发现为研究当时人们的生活提供了珍贵的资料。",
        "每年{month}月，这里都会举办传统文化节，活动持续一周。",
    ],
}


def _fill(template: str, rng: random.Random) -> str:
    values = {
        "city": rng.choice(CITIES),
        "company": rng.choice(COMPANIES),
        "person": rng.choice(PEOPLE),
        "tech": rng.choice(TECH),
        "en": rng.choice(ENGLISH),
        "lang": rng.choice(LANGS),
        "app": rng.choice(APPS),
        "food": rng.choice(FOODS),
        "sport": rng.choice(SPORTS),
        "subject": rng.choice(SUBJECTS),
        "season": rng.choice(SEASONS),
        "weather": rng.choice(WEATHER),
        "weather2": rng.choice(["小雨", "大雨", "小雪", "雷阵雨"]),
        "book": rng.choice(BOOKS),
        "book2": rng.choice(BOOKS),
        "price": rng.choice([999, 1299, 2499, 3999, 4599, 6888]),
        "price2": rng.choice([8, 10, 12, 15, 18, 25]),
        "pct": rng.randint(5, 60),
        "pct2": f"{rng.randint(2, 9)}.{rng.randint(0, 9)}",
        "num": rng.choice([120, 300, 500, 800, 1200, 2000, 3500, 10000, 56000]),
        "small": rng.randint(2, 9),
        "small2": rng.choice([20, 30, 40, 45, 60]),
        "temp": rng.randint(5, 36),
        "temp2": rng.randint(-10, 4),
        "year": rng.randint(2015, 2025),
        "year2": rng.randint(3, 30),
        "score": f"{rng.randint(60, 110)}:{rng.randint(50, 100)}",
        "month": rng.randint(1, 12),
        "day": rng.randint(1, 28),
    }
    return template.format(**values)


def generate(n_docs: int = 600, seed: int = 20261123) -> list:
    rng = random.Random(seed)
    names = sorted(TOPICS)
    docs = []
    for i in range(n_docs):
        r = rng.random()
        # a realistic spread: some one-sentence docs, mostly 3-10 sentences, a few long
        # ones that wander over several topics
        n_topics = 3 if r > 0.95 else 1
        sentences = []
        for name in rng.sample(names, n_topics):
            topic = TOPICS[name]
            n = 1 if r < 0.05 else rng.randint(3, min(10, len(topic)))
            sentences += [_fill(t, rng) for t in rng.sample(topic, n)]
        docs.append("".join(sentences))
    return docs


def main() -> None:
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_corpus.txt")
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        for doc in generate():
            f.write(doc + "\n")
    os.replace(out + ".tmp", out)
    print(out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
